import pytest
from hypothesis import given
from hypothesis import strategies as st

from lkplug import Spec, SpecError, format_spec, parse_spec


@pytest.mark.parametrize(
    "text, expected",
    [
        ("gain", Spec("gain")),
        ("gain:db=-6", Spec("gain", None, {"db": "-6"})),
        ("file:in.flac", Spec("file", "in.flac")),
        ("resample:rate=16000,quality=vhq", Spec("resample", None, {"rate": "16000", "quality": "vhq"})),
        ("file:in.flac,start=3", Spec("file", "in.flac", {"start": "3"})),
        ("file:a,b.wav", Spec("file", "a,b.wav")),  # no key=value: the whole text is the value
        ('wav:path="a,b.wav",subtype=pcm24', Spec("wav", None, {"path": "a,b.wav", "subtype": "pcm24"})),
        ("track:alice/name=music", Spec("track", "alice/name=music")),
        ("track:alice?kind=video", Spec("track", "alice?kind=video")),
        ("wav:rec/{identity}-{source}.wav", Spec("wav", "rec/{identity}-{source}.wav")),
        ("file:C:/x.wav", Spec("file", "C:/x.wav")),
        ("x:it's.wav,a=1", Spec("x", "it's.wav", {"a": "1"})),
    ],
)
def test_parses_the_forms_users_write(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", ":x", "9gain", "gain x", "gain:db=1,db=2", "gain:db=-6,loud", 'wav:"unterminated', 'wav:"a"b,c=1'],
)
def test_rejects_malformed_specs_with_a_spec_error(text):
    with pytest.raises(SpecError):
        parse_spec(text)


names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,8}", fullmatch=True)
keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
# any text a user could type, minus values holding both kinds of quote (unrepresentable by design)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).filter(
    lambda v: not ('"' in v and "'" in v)
)


@given(names, st.one_of(st.none(), values), st.dictionaries(keys, values, max_size=4))
def test_format_then_parse_round_trips(name, value, params):
    spec = Spec(name, value, params)
    assert parse_spec(format_spec(spec)) == spec


@given(st.text(max_size=40))
def test_any_string_parses_or_raises_spec_error(text):
    try:
        spec = parse_spec(text)
    except SpecError:
        return
    assert parse_spec(format_spec(spec)) == spec
