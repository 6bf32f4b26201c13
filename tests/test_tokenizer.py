"""The per-language tokenizer: Thai words, Vietnamese compounds, Latin words."""

import pytest
from rasa.nlu.constants import TOKENS_NAMES
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message

from components.nlu import LANGUAGE_ID, MultilingualTokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return MultilingualTokenizer(MultilingualTokenizer.get_default_config())


def tokens(tokenizer, text, language=None):
    message = Message(data={TEXT: text})
    if language:
        message.set(LANGUAGE_ID, {"language": language})
    tokenizer.process([message])
    return [t.text for t in message.get(TOKENS_NAMES[TEXT])]


def test_thai_is_cut_into_words(tokenizer):
    """ICU's Thai dictionary (data/languages.yml); a loanword it does not know is
    cut into syllables ("พาส|ปอร์ต"), which the character n-grams still match."""
    words = tokens(tokenizer, "นายจ้างยึดพาสปอร์ตของฉัน", "th")
    assert words[:2] == ["นายจ้าง", "ยึด"] and words[-2:] == ["ของ", "ฉัน"]
    assert "".join(words) == "นายจ้างยึดพาสปอร์ตของฉัน"


def test_khmer_lao_and_burmese_are_cut_into_words(tokenizer):
    assert tokens(tokenizer, "ខ្ញុំត្រូវការជំនួយបន្ទាន់", "km") == ["ខ្ញុំ", "ត្រូវការ", "ជំនួយ", "បន្ទាន់"]
    assert tokens(tokenizer, "ຂ້ອຍຕ້ອງການຄວາມຊ່ວຍເຫຼືອ", "lo") == ["ຂ້ອຍ", "ຕ້ອງການ", "ຄວາມຊ່ວຍເຫຼືອ"]
    burmese = tokens(tokenizer, "ကျွန်တော် အကူအညီလိုတယ်", "my")
    assert len(burmese) >= 4 and "".join(burmese) == "ကျွန်တော်အကူအညီလိုတယ်"


def test_thai_is_cut_even_without_a_language(tokenizer):
    assert "นายจ้าง" in tokens(tokenizer, "นายจ้างยึดพาสปอร์ต")


def test_vietnamese_compounds_are_joined(tokenizer):
    words = tokens(tokenizer, "tôi bị chủ giữ hộ chiếu", "vi")
    assert "hộ_chiếu" in words
    assert "tôi" in words


def test_latin_languages_split_on_words_and_keep_offsets(tokenizer):
    message = Message(data={TEXT: "Saya tak boleh balik, boss!"})
    message.set(LANGUAGE_ID, {"language": "ms"})
    tokenizer.process([message])
    found = message.get(TOKENS_NAMES[TEXT])
    assert [t.text for t in found] == ["Saya", "tak", "boleh", "balik", "boss"]
    assert all(message.get(TEXT)[t.start : t.end] == t.text for t in found)


def test_symbols_only_still_yield_a_token(tokenizer):
    assert tokens(tokenizer, "???") == ["???"]
