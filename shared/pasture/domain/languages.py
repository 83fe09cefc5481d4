"""Whisper's languages: ISO 639-1 code (639-3 where no 639-1 exists) <-> English name.

OpenAI's audio API reports a transcript's language by name ("english"); Pasture's values
carry the code. The list is whisper's own (the 99 languages of its tokenizer, plus Cantonese).
"""

from __future__ import annotations

_PAIRS = (
    "en english|zh chinese|de german|es spanish|ru russian|ko korean|fr french|ja japanese|"
    "pt portuguese|tr turkish|pl polish|ca catalan|nl dutch|ar arabic|sv swedish|it italian|"
    "id indonesian|hi hindi|fi finnish|vi vietnamese|he hebrew|uk ukrainian|el greek|ms malay|"
    "cs czech|ro romanian|da danish|hu hungarian|ta tamil|no norwegian|th thai|ur urdu|"
    "hr croatian|bg bulgarian|lt lithuanian|la latin|mi maori|ml malayalam|cy welsh|sk slovak|"
    "te telugu|fa persian|lv latvian|bn bengali|sr serbian|az azerbaijani|sl slovenian|"
    "kn kannada|et estonian|mk macedonian|br breton|eu basque|is icelandic|hy armenian|"
    "ne nepali|mn mongolian|bs bosnian|kk kazakh|sq albanian|sw swahili|gl galician|mr marathi|"
    "pa punjabi|si sinhala|km khmer|sn shona|yo yoruba|so somali|af afrikaans|oc occitan|"
    "ka georgian|be belarusian|tg tajik|sd sindhi|gu gujarati|am amharic|yi yiddish|lo lao|"
    "uz uzbek|fo faroese|ht haitian creole|ps pashto|tk turkmen|nn nynorsk|mt maltese|"
    "sa sanskrit|lb luxembourgish|my myanmar|bo tibetan|tl tagalog|mg malagasy|as assamese|"
    "tt tatar|haw hawaiian|ln lingala|ha hausa|ba bashkir|jw javanese|su sundanese|yue cantonese"
)
NAMES: dict[str, str] = dict(pair.split(" ", 1) for pair in _PAIRS.split("|"))
CODES: dict[str, str] = {name: code for code, name in NAMES.items()}


def language_name(code: str | None) -> str | None:
    """ "en" -> "english"; an unknown code is returned as it is."""
    if code is None:
        return None
    return NAMES.get(code, code)


def language_code(value: str | None) -> str | None:
    """ "english", "English" or "en" -> "en"; None for something that is neither."""
    if not value:
        return None
    v = value.strip().lower()
    if v in NAMES:
        return v
    return CODES.get(v)
