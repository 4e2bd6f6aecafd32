"""Track selectors: ``alice``, ``alice/camera``, ``alice/name=music``, ``alice/TR_xxx``,
``alice?kind=video``, and globs over identities (``guest-*``)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from lkplug import UsageError

# selector word -> (rtc.TrackSource name, media kind)
SOURCES = {
    "microphone": ("SOURCE_MICROPHONE", "audio"),
    "camera": ("SOURCE_CAMERA", "video"),
    "screen_share": ("SOURCE_SCREENSHARE", "video"),
    "screen_share_audio": ("SOURCE_SCREENSHARE_AUDIO", "audio"),
}


def source_word(track_source) -> str:
    """``microphone`` for ``rtc.TrackSource.SOURCE_MICROPHONE``: the word selectors and templates use."""
    from livekit import rtc

    for word, (name, _) in SOURCES.items():
        if getattr(rtc.TrackSource, name) == track_source:
            return word
    return "unknown"


@dataclass(frozen=True)
class TrackSelector:
    identity: str
    kind: str = "audio"
    source: str | None = None  # a key of SOURCES
    name: str | None = None
    sid: str | None = None

    @classmethod
    def parse(cls, text: str) -> TrackSelector:
        path, _, query = text.partition("?")
        identity, _, which = path.partition("/")
        if not identity:
            raise UsageError(f"track:{text}: expected a participant identity, e.g. track:alice/camera")
        kind = None
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key != "kind" or value not in ("audio", "video"):
                raise UsageError(
                    f"track:{text}: unknown option {item!r} (expected ?kind=audio or ?kind=video)"
                )
            kind = value
        source = name = sid = None
        if which.startswith("name="):
            name = which[5:]
        elif which.startswith("TR_"):
            sid = which
        elif which:
            if which not in SOURCES:
                choices = ", ".join(SOURCES)
                raise UsageError(
                    f"track:{text}: unknown track {which!r}; expected {choices}, name=NAME or a TR_ sid"
                )
            source = which
            kind = kind or SOURCES[which][1]
        return cls(identity, kind or "audio", source, name, sid)

    @property
    def fans_out(self) -> bool:
        return any(c in self.identity for c in "*?[")

    def matches(self, identity: str) -> bool:
        return fnmatch.fnmatchcase(identity, self.identity)

    def pick(self, publications):
        """The publication this selector means among a participant's, or None."""
        from livekit import rtc

        wanted_kind = rtc.TrackKind.KIND_AUDIO if self.kind == "audio" else rtc.TrackKind.KIND_VIDEO
        if self.sid or self.name:
            return next(
                (p for p in publications if self.sid in (None, p.sid) and self.name in (None, p.name)), None
            )
        of_kind = [p for p in publications if p.kind == wanted_kind]
        preferred = self.source or ("microphone" if self.kind == "audio" else "camera")
        source = getattr(rtc.TrackSource, SOURCES[preferred][0])
        exact = next((p for p in of_kind if p.source == source), None)
        # no source named: alice's microphone, else her first audio track
        return exact if exact is not None or self.source else (of_kind[0] if of_kind else None)

    def __str__(self) -> str:
        which = self.sid or (f"name={self.name}" if self.name else self.source) or f"first {self.kind}"
        return f"{self.identity}/{which}"
