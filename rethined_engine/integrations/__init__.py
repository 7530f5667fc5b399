"""The engine inside video-editing hosts: `vapoursynth` (a clip filter), `comfyui` (a custom-node package).
The ffmpeg raw pipe is `rethined_engine.video.raw_pipe` (`rethined video - MASK -o - --raw WxH`)."""
