"""Temporal mode's decisions once a frame's flows are known, written once for both of its paths: what fills the
hole (past frames, the canvas, later frames, the hold or the engine), what is stabilised, and what the stream keeps.

`TemporalEmitter` gives `stream.VideoInpainter` (numpy and OpenCV on the host, `video.temporal`) and
`device_temporal.DeviceTemporal` (torch on the engine's device) their `_emit`, `_later_sources` and
`state_nbytes`; each path hands it its step functions and array primitives as a `TemporalSteps`
(`temporal.HOST_STEPS`, `device_temporal.DEVICE_STEPS`). Frames, masks and flows are that path's arrays, laid out
as its module says.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class TemporalSteps:
    """One path's steps (same names and contracts as `video.temporal`'s) and the array primitives its decisions
    need: equal(a, b), same shape and values; any_set(mask), whether a bool mask holds a True; compose(mask,
    inside, outside), a new image that is inside where mask holds and outside elsewhere; owned(image), an image
    the stream may keep while its caller writes to the one given (a copy on the host; the device path's frames
    are its own already); nbytes(x), the bytes of one of the path's arrays, 0 for anything else."""
    PastFrame: type
    propagate: Callable
    copy_nearer: Callable
    camera_motion: Callable
    hold: Callable
    blend: Callable
    stabilise: Callable
    chain_reach: Callable
    chain_later: Callable
    bounding_box: Callable
    grow_box: Callable
    equal: Callable[[Any, Any], bool]
    any_set: Callable[[Any], bool]
    compose: Callable[[Any, Any, Any], Any]
    owned: Callable[[Any], Any]
    nbytes: Callable[[Any], int]


def engine_inpaint(engine: Any, image: Any, mask: Any, exclude: Any) -> Any:
    """engine.inpaint(image, mask), with exclude where it is not None (engines without that argument serve
    streams without exclusions)."""
    return engine.inpaint(image, mask) if exclude is None else engine.inpaint(image, mask, exclude)


@dataclass
class Previous:
    """What temporal mode keeps of the previous output frame: hole (h, w) bool at the working size (grown by
    flow_margin), the output frame and its exclusion (H, W) bool (the pixels no fill may copy, or None)."""
    hole: Any
    output: Any
    exclude: Any = None


class TemporalEmitter:
    """`_emit`, `_later_sources` and `state_nbytes` over the state a temporal path keeps: config (a `VideoConfig`),
    _steps (its `TemporalSteps`), _waiting (the arrivals whose output is not yet given, oldest first), _arrived
    (the last arrival), _memory (its `FrameMemory`), _canvas (its `BackgroundCanvas`), _previous (a `Previous` or
    None), _index (the next output's position in its scene), _anchor_fills, held_frames, _refine (the flow
    estimator that re-estimates composed flows), _engine_fill(frame, mask, exclude) and _forget_scene()."""

    def state_nbytes(self) -> int:
        """Bytes of image data the path holds between frames (past frames, flows, the previous output, the
        canvas, the frames held back for the lookahead); an array several frames share counts once."""
        held = [] if self._previous is None else [self._previous.hole, self._previous.output, self._previous.exclude]
        for past in self._memory.frames + ([self._memory.anchor] if self._memory.anchor is not None else []):
            held += [past.frame, past.source, past.grey, past.hole, past.flow, past.valid]
        arrivals = list(self._waiting) + ([self._arrived] if self._arrived is not None else [])
        for arrival in {id(a): a for a in arrivals}.values():
            held += list(vars(arrival).values())
        arrays = {id(x): x for x in held}
        return sum(self._steps.nbytes(x) for x in arrays.values()) + self._canvas.nbytes()

    def _later_sources(self, now: Any) -> Iterator:
        """The frames waiting after now, up to the next scene cut, as the path's `PastFrame`s with their flows from
        now (`temporal.chain_later`: each computed when asked for), nearest first. Empty when they are not
        expected to give a pixel: each has now's mask, and their step flows, composed without refinement, move
        now's hole less than source_margin px (`temporal.chain_reach`), so every hole pixel lands within the
        margin no frame gives (a logo on a still shot, whose later flows would be refined for nothing; the
        refined flows may reach a little farther, so a hand-held shot can lose a few pixels at the hole's edge)."""
        steps, cfg = self._steps, self.config
        later = []
        for arrival in self._waiting:
            if arrival.step is None:
                break
            later.append(arrival)
        if not later:
            return iter(())
        if all(a.same_mask for a in later):
            full_per_working = now.mask.shape[-1] / now.hole.shape[-1]
            if steps.chain_reach(now.hole, [a.ahead for a in later]) * full_per_working < cfg.source_margin:
                return iter(())
        frames = [steps.PastFrame(a.frame, a.source, a.grey, a.hole, None, None, self._index + k + 1)
                  for k, a in enumerate(later)]
        holes = now.hole
        for arrival in later:
            holes = holes | arrival.hole
        box = steps.grow_box(steps.bounding_box(holes) or (0, 0, 0, 0), cfg.flow_context, tuple(now.hole.shape))
        return steps.chain_later(now.grey, now.hole, frames, [a.ahead for a in later], [a.ahead_valid for a in later],
                                 box, cfg.flow_fill, cfg.flow_fill_ring, cfg.trust_hole_flow,
                                 self._refine if cfg.refine_flow else None)

    def _emit(self) -> Any:
        """The output of the oldest waiting frame (its hole filled from the kept past frames, the canvas, the hold
        or the engine, and the waiting later frames, then stabilised); the state moves on to it."""
        steps, cfg = self._steps, self.config
        now = self._waiting.popleft()
        frame, mask, luma, hole, step, step_valid = now.frame, now.mask, now.grey, now.hole, now.step, now.step_valid
        if step is None:
            self._forget_scene()
        previous = self._previous
        if previous is not None:
            self._memory.advance(step, step_valid, luma, hole, now.box, self._refine if cfg.refine_flow else None)
        source = now.source
        if cfg.canvas:
            trusted = None if previous is None else step_valid | (hole & cfg.trust_hole_flow)
            self._canvas.advance(frame, mask, source, None if previous is None else previous.output, step, trusted,
                                 None if previous is None else previous.exclude)
        if cfg.propagate:
            filled, remaining, given = steps.propagate(frame, mask, self._memory.frames)
        else:
            filled, remaining, given = frame, mask, []
        left_by_past = remaining
        still_hole = previous is not None and steps.equal(hole, previous.hole)
        if cfg.canvas and still_hole:
            self._canvas.refresh(filled, mask & ~remaining)
            filled, remaining = self._canvas.fill(filled, remaining, cfg.canvas_min_confidence)
        later_copies = None         # copies from later frames nearer than the past's: (filled with them, the pixels)
        if cfg.propagate and cfg.lookahead:
            ahead, nearer = steps.copy_nearer(filled, mask, left_by_past, given, self._later_sources(now), self._index)
            if not steps.any_set(remaining & ~nearer):
                filled, remaining = ahead, remaining & ~nearer
            elif steps.any_set(nearer):
                later_copies = ahead, nearer
        engine_filled = False
        if steps.any_set(remaining):
            held = None
            anchor = self._memory.anchor
            if (cfg.hold and anchor is not None
                    and steps.camera_motion(anchor.flow, hole, cfg.flow_fill_ring) <= cfg.hold_max_motion):
                held = steps.hold(filled, mask, remaining, anchor, cfg.hold_ring, cfg.hold_threshold)
            if held is not None and self._anchor_fills >= cfg.still_average_frames:
                filled = held
                self.held_frames += 1
            else:
                fresh = self._engine_fill(filled, remaining, now.exclude)
                if held is not None:
                    self._anchor_fills += 1
                    filled = steps.blend(held, fresh, remaining, 1 / self._anchor_fills)
                elif cfg.stabilise and previous is not None:
                    weight = cfg.still_stabilise_weight if still_hole else cfg.stabilise_weight
                    filled = steps.stabilise(fresh, remaining, previous.output, step, step_valid, weight,
                                             previous.exclude)
                    self._anchor_fills = cfg.still_average_frames
                else:
                    filled, self._anchor_fills = fresh, 1
                engine_filled = True
            if later_copies is not None:    # filled as without a lookahead; then the later frames' copies
                ahead, nearer = later_copies
                filled = steps.compose(nearer, ahead, filled)
                remaining = remaining & ~nearer
        copied = mask & ~remaining
        if cfg.stabilise and previous is not None:          # nothing copied: stabilise's empty box returns filled
            filled = steps.stabilise(filled, copied, previous.output, step, step_valid, cfg.copied_weight,
                                     previous.exclude)
        output = steps.compose(mask, filled, frame)
        if cfg.propagate:
            self._memory.push(steps.owned(frame), source, luma, hole, self._index)
            self._memory.evict()
        kept = steps.owned(output)  # the caller may write to the frame it gets; the state keeps its own
        if engine_filled and cfg.hold:
            self._memory.set_anchor(kept, luma, hole, self._index, now.exclude)
        self._memory.latest = self._index
        self._previous = Previous(hole, kept, now.exclude)
        self._index += 1
        return output
