"""`VideoInpainter`: frames of one size in, in order, one inpainted frame out per frame in."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from .temporal_emit import Previous, TemporalEmitter, engine_inpaint

TEMPORAL_MODES = ("off", "on")
TEMPORAL_DEVICES = ("host", "engine")


@dataclass(frozen=True)
class VideoConfig:
    """Settings of temporal mode ("on"). Flow is computed at a working size whose long side is flow_long_side;
    distances marked "working px" are at that size, "px" at full resolution.

    propagate: copy into the hole what past frames saw (dense flow, forward-backward check), the engine
        filling only what is left.
    hold: where the pixels left to invent passed the flow's check and the known pixels around the hole moved as
        the flow says (within hold_threshold), keep the pixels of the last output the engine filled, moved by
        the flow, instead of running the engine (the static-mask case: steady and cheap).
    stabilise: blend the hole's pixels with the previous output moved by the flow, where the flow passed the
        check (an unchecked average ghosts on motion): invented ones by stabilise_weight (still_stabilise_weight
        while the hole stays where it was: the background behind it moves steadily, while a moving hole needs
        a fresher fill), copied ones by copied_weight (copies from different past frames disagree by their
        flows' errors).
    scene_cut: forget the past when the known pixels change more than scene_cut_threshold.
    lookahead: frames later in the stream give what they show as well: a frame's output waits until this many
        later frames have arrived (`VideoInpainter.push`, `flush`; `process` needs 0). The hole is filled as without
        them (past frames, canvas, hold or engine), then a later frame's copy replaces each pixel no past frame gave
        or a farther one did (`temporal.copy_nearer`); where they leave nothing to invent, the engine does not run.
        The waiting frames and their flows are the only state it adds.
    temporal_device: where temporal mode runs. "host": numpy and OpenCV (`video.temporal`, the reference); "engine":
        torch on the engine's device (`video.device_temporal`, the same steps with the flow by
        `video.dis_torch.TorchDIS`), so that on a GPU the frames, flows and copies stay there. "host" is the
        default until the device path has passed its tests and been timed on a GPU (bench/gpu_bench.sh).
    moving_source_threshold: a frame gives no pixel that moved on its own, more than this many working px from
        the camera's motion (`temporal.moving_pixels`: the affine motion fitted to its step flow), so a later
        hole, whose flow follows the camera, is not filled with a walker where the walker was (a doubled walker).
    canvas: keep one background canvas (`temporal.BackgroundCanvas`) over the hole's box, brought along by the
        flow and updated with every pixel seen, and copy from it what the kept past frames no longer show
        (confidence times canvas_decay per frame, used down to canvas_min_confidence), while the hole stays where
        it was (its working-size mask equal to the previous frame's: behind a moving hole the canvas holds what
        moved away).
    hold_max_motion: hold only while the known pixels around the hole moved at most this far (median, working
        px) since the frame held from: a static camera keeps a steady fill, a moving one gets a fresh one.
    engine_margin, engine_thin_width: a thin hole (its typical width, `temporal.hole_width`, at most
        engine_thin_width of the engine's LR px over the whole frame: its HR scale, ceil(the frame's long side /
        `ModelConfig.lr_long_side`) px each) is filled by the engine on a cut-out of the frame, the box
        of the pixels left to invent grown by engine_margin px (0: always the whole frame). The engine fills at
        most at its LR size and brings the fill up to the frame's size; the cut-out fits that size at a lower
        scale (at full resolution when its long side is within lr_long_side), so thin strokes keep their width.
        A wide hole keeps the whole frame: on a cut-out its fill repeats what little context the margin holds.
        Engines without a `config` (test stand-ins) always get the whole frame.
    engine_box_multiple: the cut-out's sides are rounded up to multiples of this many px (`temporal.engine_box`),
        so that the pixels left to invent, which change from frame to frame, give the engine few image shapes.
        None: 64 on a CUDA engine (the triton backend captures a CUDA graph per new shape and keeps 4), 1 (the
        cut-out as it is) elsewhere: the wider context cost 0.07-0.32 dB on the CPU (docs/video.md).
    still_average_frames: a fill the engine made alone (the first frame, the first after a cut, or any with
        stabilise off) is not held at once: while hold would keep it, the engine fills again and the held fill
        becomes the running mean of its fills (each weighing the same), up to this many, and is then held as is.
        Fills of one still scene differ by the frames' noise, so their mean is nearer the truth than any one of
        them; each frame changes the fill by 1/n of a fill's difference. A stabilised fill is held as is; 1 (the
        default): hold the first fill. The mean is smoother than one fill: on grass (vtest) its texture washes
        out visibly (docs/video.md), so it is an option for noisy footage of smooth surfaces.
    """
    propagate: bool = True
    hold: bool = True
    stabilise: bool = True
    scene_cut: bool = True
    canvas: bool = True
    flow_long_side: int = 480           # working size of the flow, px of its longer side
    flow_preset: str = "fast"           # DIS preset (video.flow.DIS_PRESETS)
    flow_estimator: str = "opencv"      # video.flow.FLOW_ESTIMATORS: "torch" runs DIS on the engine's device
    temporal_device: str = "host"       # TEMPORAL_DEVICES: numpy on the host, or torch on the engine's device
    flow_margin: int = 3                # working px: the hole grown by this before its flow is completed
    flow_context: int = 24              # working px: flows to past frames are kept over the holes' box grown by this
    flow_fill: str = "affine"           # how the hole's flow is completed (video.temporal.FLOW_FILLS)
    flow_fill_ring: int = 16            # working px: the known flow this close to the hole completes it
    trust_hole_flow: bool = True        # a step's completed hole flow counts as checked (FrameMemory)
    refine_flow: bool = True            # re-estimate composed flows to older frames from the composition (DIS)
    refine_scales: int = 1              # ... over this many pyramid scales above DIS's finest (a local search)
    fb_relative: float = 0.01           # forward-backward check: |f + b|^2 <= rel (|f|^2 + |b|^2) + abs
    fb_absolute: float = 0.5            # working px^2
    memory_frames: int = 8              # past frames kept, at most
    lookahead: int = 0                  # later frames a frame's output waits for, to copy what they show (push)
    recent_frames: int = 3              # the newest frames always kept
    key_interval: int = 4               # besides those, every key_interval-th frame is kept
    source_margin: int = 1              # px: a past frame gives no pixel this close to its own hole (>= 1: a copy's
                                        # bilinear read then never reaches a hole pixel)
    hold_ring: int = 8                  # px: the known pixels this close to the hole decide a hold
    hold_threshold: float = 3.0         # mean absolute change of those pixels, uint8 levels, up to which it holds
    hold_max_motion: float = 0.25       # working px: median motion of the hole's surroundings since the held frame
    still_average_frames: int = 1       # engine fills averaged into a held fill before it is frozen
    engine_margin: int = 32             # px around a thin hole's box that the engine sees; 0: the whole frame
    engine_box_multiple: int | None = None  # px: that cut-out's sides are rounded up to multiples of this
                                        # (None: 64 on a CUDA engine, 1 elsewhere: temporal.engine_box_multiple)
    engine_thin_width: float = 12.0     # engine LR px: a hole at most this wide (typically) counts as thin
    canvas_margin: int = 8              # px: the canvas covers the hole's box grown by this (>= 2)
    canvas_decay: float = 0.97          # the canvas's confidence is multiplied by this every frame
    canvas_min_confidence: float = 0.1  # the canvas gives no pixel of lower confidence (about 75 frames old)
    stabilise_weight: float = 0.7       # share of the previous output in an invented pixel
    still_stabilise_weight: float = 0.8  # ... while the hole's working-size mask equals the previous frame's
    copied_weight: float = 0.8          # share of the previous output in a pixel copied from a past frame
    moving_source_threshold: float = 0.6  # working px: a frame gives no pixel whose step flow strays this far from
                                        # the camera's affine motion (content moving on its own); 0 = off
    scene_cut_side: int = 64            # px of the longer side of the thumbnails compared for a cut
    scene_cut_threshold: float = 30.0   # mean absolute difference of the known thumbnail pixels, uint8 levels

    def __post_init__(self):
        from .flow import DIS_PRESETS, FLOW_ESTIMATORS
        from .temporal import FLOW_FILLS

        if self.flow_fill not in FLOW_FILLS:
            raise ValueError(f"flow_fill: expected one of {FLOW_FILLS}, got {self.flow_fill!r}")
        if self.temporal_device not in TEMPORAL_DEVICES:
            raise ValueError(f"temporal_device: expected one of {TEMPORAL_DEVICES}, got {self.temporal_device!r}")
        if self.flow_estimator not in FLOW_ESTIMATORS:
            raise ValueError(f"flow_estimator: expected one of {FLOW_ESTIMATORS}, got {self.flow_estimator!r}")
        if self.flow_preset not in DIS_PRESETS:
            raise ValueError(f"flow_preset: expected one of {tuple(DIS_PRESETS)}, got {self.flow_preset!r}")
        for name in ("flow_long_side", "memory_frames", "recent_frames", "key_interval", "scene_cut_side",
                     "still_average_frames", "source_margin"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("lookahead", "refine_scales", "flow_margin", "fb_relative", "fb_absolute",
                     "flow_context", "flow_fill_ring", "hold_ring", "hold_threshold", "hold_max_motion",
                     "scene_cut_threshold", "canvas_min_confidence", "engine_margin",
                     "engine_thin_width", "moving_source_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.engine_box_multiple is not None and self.engine_box_multiple < 1:
            raise ValueError(f"engine_box_multiple: expected None or >= 1, got {self.engine_box_multiple}")
        if self.canvas_margin < 2:
            raise ValueError(f"canvas_margin: expected >= 2, got {self.canvas_margin}")
        if not 0 < self.canvas_decay <= 1:
            raise ValueError(f"canvas_decay: expected in (0, 1], got {self.canvas_decay}")
        for name in ("stabilise_weight", "still_stabilise_weight", "copied_weight"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}: expected in [0, 1), got {getattr(self, name)}")


def _host_frame(frame: Any) -> np.ndarray:
    """frame as an (H, W, 3) uint8 array; ValueError naming `frame` otherwise."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame: expected (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    return frame


def _check_shapes(size: tuple[int, int], mask: Any, exclude: Any) -> None:
    """ValueError naming `mask` or `exclude` (None: none) when it is not of the frame's size (H, W)."""
    for name, array in (("mask", mask), ("exclude", exclude)):
        if array is not None and tuple(np.shape(array)) != tuple(size):
            raise ValueError(f"{name}: expected shape {tuple(size)}, got {tuple(np.shape(array))}")


def _host_array(mask: Any) -> Any:
    """A torch mask as a numpy array (None and numpy as they are)."""
    return mask.cpu().numpy() if type(mask).__module__.startswith("torch") else mask


@dataclass
class _Arrival:
    """A frame as temporal mode takes it in, with what needs only it and the frame that arrived before it.

    frame (H, W, 3) uint8 and mask (H, W) bool; at the working size grey (h, w) uint8 (its hole not completed:
    `temporal.completed_pair` completes it with another frame's) and hole (h, w) bool (grown by flow_margin);
    thumb (s, t) uint8 and thumb_known (s, t) bool, for the scene-cut test; source (H, W) bool, the pixels it
    may give. When the frame before it is of the same scene (else None): step (h, w, 2) float32, the flow to
    it, and step_valid (h, w) bool, its forward-backward check over box (working px); with a lookahead, ahead
    (h, w, 2) float32, the flow from it to this frame, and ahead_valid (h, w) bool, that flow's check, and same_mask,
    whether its mask equals that frame's (then it holds that frame's mask array, and its source array too where
    neither lost a pixel to motion: plain_source); exclude (H, W) bool or None, the pixels it must not give nor the
    engine copy (`VideoInpainter.push`)."""
    frame: np.ndarray
    mask: np.ndarray
    grey: np.ndarray
    hole: np.ndarray
    thumb: np.ndarray
    thumb_known: np.ndarray
    source: np.ndarray | None     # None only while `VideoInpainter._arrive` builds it
    step: np.ndarray | None = None
    step_valid: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    ahead: np.ndarray | None = None
    ahead_valid: np.ndarray | None = None
    same_mask: bool = False
    plain_source: bool = True
    exclude: np.ndarray | None = None


class VideoInpainter(TemporalEmitter):
    """Stream frames through an `Engine`.

    frame: (H, W, 3) uint8 RGB; mask: (H, W) bool or uint8 (nonzero = fill). temporal="off": each frame is
    `engine.inpaint(frame, mask)`; "on": past frames fill what they saw and steady what the engine invents
    (`VideoConfig`). State is bounded: at most config.memory_frames past frames and one canvas over the hole's
    box, whatever the clip's length.
    Known pixels of every output equal the input's.
    """

    def __init__(self, engine: Any = None, temporal: str = "on", config: VideoConfig | None = None):
        if temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal: expected one of {TEMPORAL_MODES}, got {temporal!r}")
        if engine is None:
            from ..engine import Engine
            engine = Engine()
        self.engine = engine
        self.temporal = temporal
        self.config = config or VideoConfig()
        self.frame_size: tuple[int, int] | None = None
        self.scene_cuts = 0         # frames found to start a new scene
        self.held_frames = 0        # frames whose invented pixels were held from the anchor
        self._device = None         # the device path (`device_temporal.DeviceTemporal`) where it runs
        self._tensor_device = None  # the host path's frames came as torch tensors on this device: flush gives them so
        cfg = self.config
        engine_device = getattr(engine, "device", None) or "cpu"    # test stand-ins have none
        if temporal == "on" and cfg.temporal_device == "engine":
            from .device_temporal import DeviceTemporal

            self._device = DeviceTemporal(engine, cfg, engine_device)
        elif temporal == "on":
            from .flow import estimator
            from .temporal import BackgroundCanvas, FrameMemory

            flow_device = engine_device if cfg.flow_estimator == "torch" else "cpu"
            self._dis = estimator(cfg.flow_estimator, cfg.flow_preset, flow_device)
            self._refine = estimator(cfg.flow_estimator, cfg.flow_preset, flow_device, cfg.refine_scales,
                                     from_start=False)      # torch: search from the crop moved by the median
            self._memory = FrameMemory(cfg.memory_frames, cfg.recent_frames, cfg.key_interval, cfg.flow_fill,
                                       cfg.flow_fill_ring, cfg.trust_hole_flow)
            self._canvas = BackgroundCanvas(cfg.canvas_margin, cfg.canvas_decay)
        self._forget()

    def _forget(self) -> None:
        """Forget everything: the frames held back for the lookahead and the scene."""
        self._waiting: deque[_Arrival] = deque()   # arrived, output not yet given (at most config.lookahead)
        self._arrived: _Arrival | None = None        # the frame that arrived last
        self._forget_scene()

    def _forget_scene(self) -> None:
        """Forget the past of the frames still to be output (a new scene starts)."""
        self._previous: Previous | None = None
        self._index = 0             # the next output's position in its scene
        self._anchor_fills = 0      # engine fills averaged in the anchor (still_average_frames: frozen)
        if self.temporal == "on" and self._device is None:
            self._memory.clear()
            self._canvas.clear()

    def reset(self) -> None:
        """Forget every past frame (the next frame may have another size); frames that `push` still holds
        back are dropped (`flush` first to get them)."""
        self.frame_size = None
        self._forget()
        if self._device is not None:
            self._device.reset()

    def state_nbytes(self) -> int:
        """Bytes of image data the stream holds between frames (past frames, flows, the previous output, the
        canvas, the frames held back for the lookahead)."""
        if self.temporal == "off":
            return 0
        if self._device is not None:
            return self._device.state_nbytes()
        return super().state_nbytes()

    @property
    def _steps(self):
        """The host path's steps (`temporal.HOST_STEPS`, imported on first use: temporal off needs no OpenCV)."""
        from .temporal import HOST_STEPS

        return HOST_STEPS

    def process(self, frame: Any, mask: Any, exclude: Any = None) -> Any:
        """One frame (H, W, 3) uint8 numpy or (3, H, W) uint8 torch and its mask (H, W) (and exclude, as `push`
        takes it) -> the inpainted frame, of the frame's type, layout and device. Needs config.lookahead 0 (with a
        lookahead, a frame's output waits for later frames: `push`, `flush`)."""
        if self.temporal == "on" and self.config.lookahead:
            raise ValueError(f"process: config.lookahead is {self.config.lookahead}, so a frame's output waits "
                             "for later frames; use push() and flush(), or lookahead=0")
        return self.push(frame, mask, exclude)[0]

    def push(self, frame: Any, mask: Any, exclude: Any = None) -> list[Any]:
        """Take one frame (H, W, 3) uint8 numpy or (3, H, W) uint8 torch and its mask (H, W) -> the outputs now
        ready, each of the frame's type, layout and device, in order: with config.lookahead n (temporal on), frame
        i's output comes with frame i + n (the first n pushes return none); `flush` gives the rest. Without a
        lookahead, exactly this frame's output. Tensors go through the host path as numpy arrays (temporal_device
        "host"), through the device path as they are.

        exclude: None, or (H, W) pixels of this frame (nonzero) that no fill may copy: this frame does not give
        them to other frames' holes, and the engine does not copy them (`Engine.inpaint`'s exclude)."""
        tensor_in = type(frame).__module__.startswith("torch")
        if self._device is not None:
            return self._push_device(frame, mask, exclude)
        if self.temporal == "off":
            size = tuple(frame.shape[-2:]) if tensor_in else np.asarray(frame).shape[:2]
            self._check_size("frame", size)
            self.frame_size = size
            return [engine_inpaint(self.engine, frame, mask, exclude)]
        if tensor_in:
            outputs = self.push(frame.permute(1, 2, 0).cpu().numpy(), _host_array(mask), _host_array(exclude))
            self._tensor_device = frame.device
            return [self._for_caller(out) for out in outputs]
        frame, mask = _host_frame(frame), np.asarray(mask)
        size = frame.shape[:2]
        self._check_size("frame", size)
        self._tensor_device = None
        _check_shapes(size, mask, exclude)
        self.frame_size = size
        held_back = self.config.lookahead > 0     # the frame waits: keep a copy the caller cannot change
        self._arrived = self._arrive(np.array(frame) if held_back else np.ascontiguousarray(frame), mask != 0)
        if exclude is not None:
            self._arrived.exclude = np.asarray(exclude) != 0
            self._arrived.source = self._arrived.source & ~self._arrived.exclude
            self._arrived.plain_source = False
        self._waiting.append(self._arrived)
        outputs = []
        while len(self._waiting) > self.config.lookahead:
            outputs.append(self._emit())
        return outputs

    def flush(self) -> list[Any]:
        """The outputs of the frames `push` still holds back (the end of the clip), in order, of the type of the
        frames pushed last."""
        if self._device is not None:
            outputs = self._device.flush()
            self.scene_cuts, self.held_frames = self._device.scene_cuts, self._device.held_frames
        else:
            outputs = []
            while self.temporal == "on" and self._waiting:
                outputs.append(self._emit())
        return [self._for_caller(out) for out in outputs]

    def process_batch(self, frames: np.ndarray, masks: np.ndarray, excludes: np.ndarray | None = None) -> np.ndarray:
        """Frames (B, H, W, 3) uint8 in order, masks (B, H, W) or one (H, W) for all (excludes the same, or None)
        -> (B, H, W, 3) uint8. With a lookahead, the batch's last frames see the later frames of this batch only
        (`push` each, then `flush`)."""
        frames, masks = np.asarray(frames), np.asarray(masks)
        excludes = None if excludes is None else np.asarray(excludes)
        if frames.ndim != 4:
            raise ValueError(f"frames: expected (B, H, W, 3), got {frames.shape}")
        for name, array in (("masks", masks), ("excludes", excludes)):
            if array is not None and array.shape not in (frames.shape[:3], frames.shape[1:3]):
                raise ValueError(f"{name}: expected {frames.shape[:3]} or {frames.shape[1:3]}, got {array.shape}")
        if self.temporal == "off":          # one engine call for the whole batch
            self._check_size("frames", frames.shape[1:3])
            self.frame_size = frames.shape[1:3]
            per_frame = [None if a is None else list(a) if a.ndim == 3 else a for a in (masks, excludes)]
            return np.stack(list(self.engine.inpaint_frames(frames, per_frame[0], batch_size=len(frames),
                                                            excludes=per_frame[1])))
        masks = np.broadcast_to(masks, frames.shape[:3])
        excludes = [None] * len(frames) if excludes is None else np.broadcast_to(excludes, frames.shape[:3])
        outputs = [out for frame, mask, exclude in zip(frames, masks, excludes)
                   for out in self.push(frame, mask, exclude)]
        return np.stack(outputs + self.flush())

    def _push_device(self, frame: Any, mask: Any, exclude: Any = None) -> list[Any]:
        """One frame through the device path: frame (H, W, 3) uint8 numpy or (3, H, W) uint8 torch (any device),
        mask (H, W) numpy or torch, nonzero = fill (exclude the same, nonzero = never copied, or None) -> the
        outputs now ready, numpy (H, W, 3) or torch (3, H, W) on the frame's device. The path keeps its own copies
        of the frame and the outputs."""
        import torch

        tensor_in = isinstance(frame, torch.Tensor)
        if tensor_in:
            if frame.dim() != 3 or frame.shape[0] != 3 or frame.dtype != torch.uint8:
                raise ValueError(f"frame: expected a (3, H, W) uint8 tensor, got {tuple(frame.shape)} {frame.dtype}")
            size = tuple(frame.shape[1:])
        else:
            frame = _host_frame(frame)
            size = frame.shape[:2]
        self._check_size("frame", size)
        _check_shapes(size, mask, exclude)
        device = self._device.device
        if tensor_in:
            pixels = frame.to(device, copy=True)
        else:
            pixels = torch.from_numpy(np.ascontiguousarray(frame)).to(device, copy=True).permute(2, 0, 1).contiguous()
        hole, excluded = (None if m is None else m.to(device) != 0 if isinstance(m, torch.Tensor)
                          else torch.from_numpy(np.asarray(m) != 0).to(device) for m in (mask, exclude))
        self.frame_size = size
        self._tensor_device = frame.device if tensor_in else None
        outputs = self._device.push(pixels, hole, excluded)
        self.scene_cuts, self.held_frames = self._device.scene_cuts, self._device.held_frames
        return [self._for_caller(out) for out in outputs]

    def _for_caller(self, out: Any) -> Any:
        """An output, the host path's (H, W, 3) uint8 array or the device path's (3, H, W) uint8 tensor (which
        the path keeps), as the caller's frames came: a (3, H, W) tensor on their device (`_tensor_device`) or
        an (H, W, 3) array, never the device path's own tensor."""
        if isinstance(out, np.ndarray):
            if self._tensor_device is None:
                return out
            import torch

            return torch.from_numpy(out).permute(2, 0, 1).to(self._tensor_device)
        if self._tensor_device is not None:
            return out.to(self._tensor_device, copy=True)
        return out.permute(1, 2, 0).contiguous().cpu().numpy()

    def _check_size(self, name: str, size: tuple[int, int]) -> None:
        """Raise ValueError naming `name` when (height, width) `size` is not the stream's frame size."""
        if self.frame_size is not None and tuple(size) != tuple(self.frame_size):
            raise ValueError(f"{name}: size {size[1]}x{size[0]} differs from the stream's "
                             f"{self.frame_size[1]}x{self.frame_size[0]}; call reset() before a new size")

    def _engine_fill(self, frame: np.ndarray, mask: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """frame (H, W, 3) uint8 with its mask (H, W) bool filled by the engine, which copies no pixel of exclude
        ((H, W) bool or None): over the mask's box grown by config.engine_margin px when the hole is thin
        (`hole_width`, VideoConfig), else over the whole frame; pixels outside that box unchanged."""
        from .temporal import (
            bounding_box,
            engine_box,
            engine_box_multiple,
            hole_width,
            thin_hole,
        )

        cfg, model = self.config, getattr(self.engine, "config", None)
        if (cfg.engine_margin == 0 or model is None
                or not thin_hole(mask.shape, hole_width(mask), model.lr_long_side, cfg.engine_thin_width)):
            return engine_inpaint(self.engine, frame, mask, exclude)
        multiple = engine_box_multiple(cfg.engine_box_multiple, getattr(self.engine, "device", None))
        y0, y1, x0, x1 = engine_box(bounding_box(mask), cfg.engine_margin, multiple, mask.shape)
        out = frame.copy()
        cut = None if exclude is None else np.ascontiguousarray(exclude[y0:y1, x0:x1])
        out[y0:y1, x0:x1] = engine_inpaint(self.engine, np.ascontiguousarray(frame[y0:y1, x0:x1]),
                                           np.ascontiguousarray(mask[y0:y1, x0:x1]), cut)
        return out

    def _arrive(self, frame: np.ndarray, mask: np.ndarray) -> _Arrival:
        """What temporal mode needs of a frame (H, W, 3) uint8 with its mask (H, W) bool and the frame that
        arrived before it: its working-size grey and hole, the scene-cut test, the flows between the two and
        the pixels it may give."""
        import cv2

        from .flow import forward_backward_valid, grey
        from .temporal import (
            bounding_box,
            complete_flow,
            complete_grey,
            completed_pair,
            grow,
            grow_box,
            moving_pixels,
            scene_cut,
            shrink_mask,
            working_size,
        )

        cfg = self.config
        size = working_size(frame.shape[:2], cfg.flow_long_side)
        hole = shrink_mask(mask, size, cfg.flow_margin)
        luma = cv2.resize(grey(frame), size[::-1], interpolation=cv2.INTER_AREA)
        thumb_size = working_size(frame.shape[:2], cfg.scene_cut_side)
        thumb = cv2.resize(complete_grey(luma, hole), thumb_size[::-1], interpolation=cv2.INTER_AREA)
        now = _Arrival(frame, mask, luma, hole, thumb, ~shrink_mask(mask, thumb_size, 0), None)
        before = self._arrived
        if before is not None and cfg.scene_cut and scene_cut(
                thumb, before.thumb, now.thumb_known & before.thumb_known, cfg.scene_cut_threshold):
            self.scene_cuts += 1
            before = None
        if before is None:
            now.source = ~grow(mask, cfg.source_margin)
            return now
        fill = (cfg.flow_fill, cfg.flow_fill_ring)
        here, there = completed_pair(luma, before.grey, hole | before.hole)
        now.step = complete_flow(self._dis.calc(here, there, None), hole, before.hole, *fill)
        back = complete_flow(self._dis.calc(there, here, None), before.hole, hole, *fill)
        now.box = grow_box(bounding_box(hole | before.hole) or (0, 0, 0, 0), cfg.flow_context, size)
        now.step_valid = forward_backward_valid(now.step, back, cfg.fb_relative, cfg.fb_absolute, now.box)
        if cfg.lookahead:
            now.same_mask = np.array_equal(mask, before.mask)
            if now.same_mask:        # a still mask: the waiting frames hold one array (8 MB per frame at 4K)
                now.mask = before.mask
            now.ahead = back
            now.ahead_valid = forward_backward_valid(back, now.step, cfg.fb_relative, cfg.fb_absolute, now.box)
        if cfg.moving_source_threshold > 0:
            moving = moving_pixels(now.step, hole, cfg.moving_source_threshold)
            if moving.any():
                now.source = ~grow(mask, cfg.source_margin) & ~cv2.resize(
                    moving.view(np.uint8), frame.shape[1::-1], interpolation=cv2.INTER_NEAREST).view(bool)
                now.plain_source = False
        if now.plain_source:     # with a still mask the frame before holds the same ~grow(mask): one array, made once
            share = now.same_mask and before.plain_source
            now.source = before.source if share else ~grow(mask, cfg.source_margin)
        return now
