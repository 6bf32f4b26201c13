"""The language component (text) and the slot decision (conversation)."""

import pytest

from actions.language import decide_language, named_language
from components.language import LanguageScorer, normalise_hint
from content import languages


@pytest.mark.parametrize(
    "text,expected",
    [
        ("my employer took my passport and I cannot go home", "en"),
        ("majikan saya ambil pasport saya, saya tak boleh balik kampung", "ms"),
        ("majikan saya ambil paspor saya, saya nggak bisa pulang ke kampung", "id"),
        ("tôi bị chủ giữ hộ chiếu, tôi phải làm sao", "vi"),
        ("toi bi chu giu ho chieu khong cho ve nha", "vi"),
        ("นายจ้างยึดพาสปอร์ตของฉัน ทำยังไงดี", "th"),
    ],
)
def test_each_language_long(scorer, text, expected):
    assert scorer.identify(text).language == expected


@pytest.mark.parametrize(
    "malay,indonesian",
    [
        ("saya tak boleh keluar", "saya nggak bisa keluar"),
        ("berapa wang yang saya boleh tuntut", "berapa uang yang bisa saya tuntut"),
        ("bantuan guaman percuma", "bantuan hukum gratis"),
        ("pejabat kerajaan", "kantor pemerintah"),
        ("kerana saya takut polis", "karena saya takut polisi"),
    ],
)
def test_malay_and_indonesian_are_kept_apart(scorer, malay, indonesian):
    assert scorer.identify(malay).language == "ms"
    assert scorer.identify(indonesian).language == "id"


def test_scripts_are_unambiguous_even_for_one_word(scorer):
    thai = scorer.identify("ช่วยด้วย")
    assert (thai.language, thai.unambiguous) == ("th", True)
    vietnamese = scorer.identify("được")
    assert (vietnamese.language, vietnamese.unambiguous) == ("vi", True)
    # A single accented loanword is not Vietnamese.
    assert scorer.identify("café").language != "vi"


def test_a_malay_or_indonesian_greeting_is_never_vietnamese(scorer):
    # "hai" is "hi" in Malay and Indonesian, and "two" in Vietnamese typed without accents.
    for text in ("hai", "Hai!", "halo", "hai ok"):
        guess = scorer.identify(text)
        assert guess.language in ("ms", "id") and not guess.unambiguous, text
    assert scorer.identify("hai", hint="id").language == "id"
    assert scorer.identify("hai", hint="ms").language == "ms"
    assert scorer.identify("em lam hai nam roi khong duoc tra luong").language == "vi"


def test_filipino_is_an_unsupported_language_not_vietnamese(scorer):
    for text in ("kinuha ng amo ko ang passport ko, ano ang gagawin ko", "hindi ako binayaran ng amo ko"):
        guess = scorer.identify(text)
        assert guess.reason == "unsupported language" and not guess.unambiguous
    assert scorer.identify("kinuha ng amo ko ang passport ko", hint="ms").language == "ms"
    # Vietnamese chat abbreviations ("ko", "mo", "ng") are not Filipino
    assert scorer.identify("bị ép làm việc trả nợ mà ko đc nghỉ thì có tính là bị buôn ng ko").language == "vi"


def test_international_words_are_not_evidence(scorer):
    assert scorer.identify("ok").reason == "international words"
    assert scorer.identify("ok", hint="th").language == "th"
    assert scorer.identify("hello thanks").language == "en"


def test_channel_hint_is_a_prior_for_short_messages(scorer):
    # "tolong" is the same word in Malay and Indonesian: the hint decides.
    assert scorer.identify("tolong", hint="ms").language == "ms"
    assert scorer.identify("tolong", hint="id").language == "id"
    # ... but a clear sentence beats the hint.
    assert scorer.identify("my boss never paid my salary for six months", hint="id").language == "en"


def test_code_mixed_messages(scorer):
    assert scorer.identify("boss saya tak bayar gaji, can or not claim?").language == "ms"
    assert scorer.identify("bos aku gak bayar gaji, gimana cara claim nya").language == "id"
    assert scorer.identify("พี่คะ passport โดนยึดค่ะ").language == "th"


def test_other_scripts_are_reported_unsupported(scorer):
    for text in ("我的护照被老板拿走了", "여권을 뺏겼어요", "ساعدني من فضلك", "დამეხმარეთ"):
        assert scorer.identify(text).reason == "unsupported script"


def test_a_script_only_one_of_our_languages_writes_is_that_language(scorer):
    """Each registry language whose script no other of ours writes is read from
    its letters alone, short messages included (Burmese, Khmer, Lao, Thai)."""
    from content.nlu_files import sample

    alone = [
        lang
        for lang in languages.REGISTRY
        if not lang.latin and languages.languages_of_script(lang.script) == (lang.code,)
    ]
    assert alone, "no language with a script of its own"
    for lang in alone:
        text = sample(lang.code, "greet") or sample(lang.code, "ask_help_helplines")
        if text is None:
            continue  # no training data yet: tests/test_registry.py names the missing step
        guess = scorer.identify(text)
        assert guess.language == lang.code and guess.reason not in languages.UNSUPPORTED_REASONS, (lang.code, guess)


def test_shan_in_the_myanmar_script_is_answered_in_burmese_as_unsupported(scorer):
    if not languages.is_supported("my"):
        pytest.skip("Burmese is not in the registry")
    guess = scorer.identify("ၵဝ်ႈ ၶႂ်ႈ ႁႂ်ႈ ၸွႆႈထႅမ် ၶႃႈ")  # Shan: "I want help"
    assert (guess.language, guess.reason) == ("my", "unsupported language")


def test_empty_and_symbol_only_messages(scorer):
    assert scorer.identify("").reason == "no letters"
    assert scorer.identify("???!!! 123").reason == "no letters"


def test_hint_normalisation():
    assert normalise_hint("en-US") == "en"
    assert normalise_hint("ms_MY") == "ms"
    assert normalise_hint("in") == "id"
    assert normalise_hint("fr") is None
    assert normalise_hint(None) is None


def test_scorer_survives_serialisation(scorer):
    again = LanguageScorer.from_json(scorer.to_json())
    assert again.identify("saya tak boleh balik").language == "ms"


# -- the conversation's decision ---------------------------------------------


def guess(language, confidence=0.99, n_words=6, unambiguous=False, reason="statistics"):
    return {
        "language": language,
        "confidence": confidence,
        "n_words": n_words,
        "unambiguous": unambiguous,
        "reason": reason,
    }


def test_first_message_sets_the_language():
    assert decide_language(None, guess("vi", n_words=1), "chào") == "vi"


def test_sticky_on_one_or_two_words():
    assert decide_language("ms", guess("id", n_words=1), "tolong") == "ms"
    assert decide_language("th", guess("en", n_words=2), "ok thanks") == "th"


def test_switches_on_a_clear_sentence():
    assert decide_language("en", guess("id", n_words=7), "saya mau tanya soal gaji yang belum dibayar") == "id"


def test_does_not_switch_on_an_unsure_sentence():
    assert decide_language("ms", guess("id", confidence=0.6, n_words=5), "saya mahu tanya pasal gaji") == "ms"


def test_switches_on_unambiguous_script_even_when_short():
    assert decide_language("en", guess("th", n_words=1, unambiguous=True), "สวัสดี") == "th"


def test_button_payloads_never_switch():
    assert decide_language("vi", guess("en"), '/choose_language{"language_choice":"en"}') == "vi"


def test_unsupported_script_keeps_the_language():
    assert decide_language("id", guess("en", reason="unsupported script"), "我需要帮助") == "id"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("can you speak Thai?", "th"),
        ("boleh cakap bahasa melayu?", "ms"),
        ("bisa pakai bahasa indonesia?", "id"),
        ("nói tiếng Việt được không", "vi"),
        ("พูดภาษาไทยได้ไหม", "th"),
        ("english please", "en"),
        ("hello", None),
    ],
)
def test_named_language(text, expected):
    assert named_language(text) == expected


def test_a_command_as_first_message_takes_the_channel_hint():
    assert decide_language(None, None, "/request_human", hint="th-TH") == "th"
    assert decide_language("vi", None, "/request_human", hint="th") == "vi"
    assert decide_language(None, None, "/request_human") == "en"


# -- Burmese in Zawgyi --------------------------------------------------------------------------------


def test_real_zawgyi_text_becomes_unicode_and_unicode_stays_as_it_is():
    from content.text import normalise

    # "mingalaba" (hello) as Zawgyi keyboards type it, and in Unicode
    assert normalise("မဂၤလာပါ") == normalise("မင်္ဂလာပါ")
    # Unicode Burmese is never "converted"
    for text in ("ကျွန်တော့်ကို ကူညီပါ", "ပတ်စပို့ကို ဘော့စ်က သိမ်းထားတယ်", "မင်္ဂလာပါ"):
        assert normalise(text) == normalise(text).lower() and normalise(text) == " ".join(text.split()).lower()


def test_zawgyi_both_ways_on_the_burmese_held_out_messages(scorer):
    """Every Burmese held-out message converted to Zawgyi (ICU's my-Zawgyi) comes
    back as the same Unicode, and is read as Burmese."""
    import pathlib

    import icu

    from content.nlu_files import nlu_examples
    from content.text import normalise

    burmese = languages.languages_of_script("myanmar")
    if not burmese:
        pytest.skip("no Myanmar-script language in the registry")
    path = pathlib.Path(__file__).parent / "nlu" / f"{burmese[0]}.yml"
    to_zawgyi = icu.Transliterator.createInstance("my-Zawgyi")
    texts = [t for t, _, _ in nlu_examples(path)]
    converted = [(t, to_zawgyi.transliterate(t)) for t in texts]
    changed = [(u, z) for u, z in converted if u != z]
    assert len(changed) >= 0.9 * len(texts)
    back = sum(normalise(z) == normalise(u) for u, z in changed)
    assert back >= 0.95 * len(changed), f"{back}/{len(changed)} came back as the same Unicode"
    read = sum(scorer.identify(z).language == burmese[0] for _, z in changed)
    assert read >= 0.95 * len(changed), f"{read}/{len(changed)} read as Burmese"
