"""The ``apm`` processor: WebRTC's audio processing module as the LiveKit SDK ships it
(``rtc.AudioProcessingModule``): noise suppression, high-pass filter, automatic gain control, echo
cancellation.

The module takes exactly 10 ms of s16 audio at 8, 16, 32 or 48 kHz, mono or stereo. The contract says
so and the engine does the rest: a 44.1 kHz stereo float stream in 20 ms frames arrives here resampled
to 48 kHz, converted to s16 and rechunked to 480 samples, without the user asking.
"""

from __future__ import annotations

import numpy as np

from lkplug import AudioContract, Processor

RATES = (8000, 16000, 32000, 48000)


class Apm(Processor):
    accepts = {"audio": AudioContract(rates=RATES, channels=(1, 2), sample_formats=("s16",), frame_ms=10)}
    emits = "the format it takes: s16, 10 ms frames"

    def __init__(
        self,
        noise_suppression: bool = True,
        high_pass: bool = True,
        gain_control: bool = False,
        echo_cancellation: bool = False,
        delay_ms: int = 0,
    ):
        from livekit import rtc

        self._rtc = rtc
        self.module = rtc.AudioProcessingModule(
            echo_cancellation=echo_cancellation,
            noise_suppression=noise_suppression,
            high_pass_filter=high_pass,
            auto_gain_control=gain_control,
        )
        self.echo_cancellation = echo_cancellation
        if echo_cancellation:
            self.module.set_stream_delay_ms(delay_ms)

    def _run(self, frame, method):
        data = frame.data
        # the engine guarantees this contract; a caller who goes around it gets an error here, not
        # the SDK's Rust panic, which aborts the whole process ("slice must have a multiple of 10ms")
        if (
            frame.sample_rate not in RATES
            or data.shape[0] * 100 != frame.sample_rate
            or data.dtype != np.int16
        ):
            raise ValueError(
                f"apm takes 10 ms of s16 at {'/'.join(map(str, RATES))} Hz; got {data.shape[0]} {data.dtype}"
                f" samples at {frame.sample_rate} Hz"
            )
        lk_frame = self._rtc.AudioFrame(bytearray(data), frame.sample_rate, data.shape[1], data.shape[0])
        method(lk_frame)  # in place
        return np.frombuffer(lk_frame.data, np.int16).reshape(data.shape)

    def process(self, frame) -> list:
        return [frame.replace(data=self._run(frame, self.module.process_stream))]

    def reverse(self, frame) -> None:
        """Feed 10 ms of the far end (what the loudspeaker plays) for echo cancellation. The command
        line has no far-end stream; an application that plays audio calls this for each frame."""
        self._run(frame, self.module.process_reverse_stream)
