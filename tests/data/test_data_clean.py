"""Cleaning steps: PII, normalisation, exact and near dedup (English and Chinese), quality filters."""

from __future__ import annotations

from collections import Counter

import pytest

from llmlab.data.clean import Document, clean_documents
from llmlab.data.config import CleanConfig
from llmlab.data.dedup import exact_duplicates, near_duplicates
from llmlab.data.pii import scrub_pii
from llmlab.data.quality import duplicate_line_fraction, duplicate_ngram_fraction, quality_issue, symbol_ratio
from llmlab.data.sources import split_paragraphs

PROSE = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
    "want of a wife. However little known the feelings or views of such a man may be on his first entering "
    "a neighbourhood, this truth is so well fixed in the minds of the surrounding families."
)
ZH_PROSE = "春天来了，公园里的花都开了，孩子们在草地上奔跑，老人们坐在长椅上聊天，到处都是欢声笑语。"


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to john.doe+news@example.co.uk today", "write to <EMAIL> today", "email"),
        ("邮箱zhang.san@qq.com，谢谢", "邮箱<EMAIL>，谢谢", "email"),
        ("see https://example.com/a?b=1&c=2. Thanks", "see <URL>. Thanks", "url"),
        ("(docs at www.example.org/page)", "(docs at <URL>)", "url"),
        ("网址https://例子.cn/页面，欢迎", "网址<URL>，欢迎", "url"),
        ("call 13812345678 now", "call <PHONE> now", "phone"),
        ("电话：+86 138 1234 5678。", "电话：<PHONE>。", "phone"),
        ("电话13912345678。", "电话<PHONE>。", "phone"),
        ("office +1 (555) 123-4567 or 555-123-4567", "office <PHONE> or <PHONE>", "phone"),
        ("北京 010-12345678", "北京 <PHONE>", "phone"),
        ("身份证 11010519491231002X 号", "身份证 <ID> 号", "id"),
        ("ID: 110105194912310021.", "ID: <ID>.", "id"),
        ("host 192.168.1.10 is up", "host <IP> is up", "ip"),
        ("v6 2001:db8::ff00:42:8329 and fe80:0:0:0:0:0:0:1", "v6 <IP> and <IP>", "ip"),
    ],
)
def test_pii_each_kind_is_scrubbed(text: str, expected: str, kind: str) -> None:
    counts: Counter = Counter()
    assert scrub_pii(text, counts=counts) == expected
    assert counts[kind] == expected.count(f"<{kind.upper()}>") and sum(counts.values()) == counts[kind]


@pytest.mark.parametrize(
    "text",
    [
        PROSE,
        ZH_PROSE,
        "In 1999, 2000 people paid $12.50 at 10:30:45 on 2021-03-04 for version 1.2.3.",
        "Act 3, Scene 1, line 56: To be, or not to be. Call me at noon.",
        "A long number 12345678901234567890 and a ratio 3:4.",
    ],
)
def test_pii_leaves_normal_text_alone(text: str) -> None:
    counts: Counter = Counter()
    assert scrub_pii(text, counts=counts) == text
    assert sum(counts.values()) == 0


def test_pii_kinds_can_be_chosen() -> None:
    assert scrub_pii("a@b.com 13812345678", kinds=["phone"]) == "a@b.com <PHONE>"
    with pytest.raises(ValueError, match="unknown PII kind"):
        scrub_pii("x", kinds=["ssn"])


def test_exact_duplicates_ignore_whitespace_layout() -> None:
    assert exact_duplicates([PROSE, "other", PROSE.replace(" ", "  "), ZH_PROSE, ZH_PROSE]) == [
        False, False, True, False, True,
    ]  # fmt: skip


def test_near_duplicates_english_and_chinese() -> None:
    en_near = PROSE.replace("single man", "lonely man").replace("good fortune", "large fortune")
    en_other = (
        "The sky above the port was the color of television, tuned to a dead channel. Case was the sharpest "
        "data-thief in the matrix, and he had worked for the best in the business."
    )
    zh_near = ZH_PROSE.replace("孩子们", "小朋友们")
    zh_other = "机器学习是人工智能的一个分支，它使计算机能够从数据中学习规律，而无需显式地为每个任务编写程序。"
    flags = near_duplicates([PROSE, en_other, en_near, ZH_PROSE, zh_other, zh_near], threshold=0.7)
    assert flags == [False, False, True, False, False, True]


def test_quality_filters_remove_junk_and_keep_prose() -> None:
    kw = dict(min_chars=20, max_symbol_ratio=0.1, max_duplicate_line_fraction=0.3, max_duplicate_ngram_fraction=0.15)
    assert quality_issue(PROSE, **kw) is None
    assert quality_issue(ZH_PROSE + "秋天的时候，树叶变黄了，一片片落在地上，像铺了一层金色的地毯。", **kw) is None
    assert quality_issue("too short", **kw) == "too_short"
    assert quality_issue(PROSE, max_chars=100) == "too_long"
    junk = "#### $$$ @@@ ||| {{{ }}} ~~~ <<< >>> === *** +++ %%% ^^^ [[[ ]]] " * 3
    assert symbol_ratio(junk) > 0.9 and quality_issue(junk, **kw) == "symbols"
    menu = "\n".join(["Home", "About us", "Contact", "Login"] * 10 + [PROSE])
    assert duplicate_line_fraction(menu) > 0.7 and quality_issue(menu, **kw) == "duplicate_lines"
    spam = " ".join(["buy cheap pills online now today"] * 30)
    assert duplicate_ngram_fraction(spam) > 0.9 and quality_issue(spam, **kw) == "duplicate_ngrams"
    zh_spam = "点击这里免费领取大奖" * 20
    assert duplicate_ngram_fraction(zh_spam) > 0.9  # CJK characters count as words
    assert duplicate_ngram_fraction(PROSE) < 0.15


def test_split_paragraphs_is_lossless() -> None:
    text = "\n\nfirst para\nline two\n\n\n  second\n \nthird\n"
    parts = split_paragraphs(text)
    assert "".join(p + s for p, s in parts) == text
    assert [p.strip() for p, _ in parts if p.strip()] == ["first para\nline two", "second", "third"]


def _docs(*texts: str) -> list[Document]:
    return [Document(t, f"doc{i}") for i, t in enumerate(texts)]


def test_all_steps_off_keeps_text_exactly() -> None:
    cfg = CleanConfig()
    cfg.disable_all()
    texts = ["ＡＢＣ ﬁ\n\n" + PROSE + "\n\n" + PROSE, "a@b.com", "x"]
    kept, reports = clean_documents(_docs(*texts), cfg)
    assert [d.text for d in kept] == texts
    assert all(not r.enabled for r in reports)


def test_normalize_counts_changed_characters() -> None:
    cfg = CleanConfig()
    cfg.disable_all()
    cfg.normalize.enabled = True
    kept, reports = clean_documents(_docs("ＡＢＣ１２３ plain", "plain text"), cfg)
    assert kept[0].text == "ABC123 plain" and kept[1].text == "plain text"
    assert reports[0].chars_changed == 6 and reports[0].details["documents_changed"] == 1


def test_pipeline_paragraph_dedup_and_quality_report_counts() -> None:
    cfg = CleanConfig()
    cfg.near_dedup.threshold = 0.7
    cfg.near_dedup.min_chars = cfg.exact_dedup.min_chars = 30  # ZH_PROSE has 46 characters
    near = PROSE.replace("single man", "lonely man")
    docs = _docs(
        PROSE + "\n\n" + ZH_PROSE + "\n\nMail: someone@example.com",  # kept, e-mail scrubbed
        "Intro paragraph that is unique and long enough to be checked.\n\n" + PROSE,  # its PROSE is an exact dup
        near,  # near-duplicate of PROSE: the whole document goes
        "#### $$$ @@@ ||| {{{ }}} ~~~ <<< >>> === *** +++ %%% ^^^",  # symbols
        ZH_PROSE.replace("春天", "夏天"),  # near-duplicate of ZH_PROSE
    )
    kept, reports = clean_documents(docs, cfg)
    by = {r.name: r for r in reports}
    assert by["pii"].details["email"] == 1
    assert by["exact_dedup"].removed == 1 and by["exact_dedup"].unit == "paragraphs"
    assert by["near_dedup"].removed == 2 and by["near_dedup"].documents_removed == 2
    assert by["quality"].details == {"symbols": 1}
    assert [d.text for d in kept] == [
        PROSE + "\n\n" + ZH_PROSE + "\n\nMail: <EMAIL>",  # NFKC keeps the full-width comma by default
        "Intro paragraph that is unique and long enough to be checked.\n\n",
    ]


def test_everything_removed_is_a_clear_error() -> None:
    cfg = CleanConfig()
    cfg.quality.min_chars = 10_000
    with pytest.raises(ValueError, match=r"all 2 documents were removed by the cleaning steps \(quality removed 2\)"):
        clean_documents(_docs(PROSE, ZH_PROSE), cfg)


def test_scrubbed_pii_survives_the_quality_filter() -> None:
    """A short record whose PII was replaced by placeholders is kept, not mistaken for symbol junk."""
    text = "Mail: zhang.san@example.com, tel 13812345678."
    scrubbed = scrub_pii(text)
    assert "<PHONE>" in scrubbed and "<EMAIL>" in scrubbed
    assert symbol_ratio(scrubbed) < 0.1
    cfg = CleanConfig()
    cfg.exact_dedup.enabled = cfg.near_dedup.enabled = False
    docs, _ = clean_documents([Document(text=text, source="t")], cfg)
    assert [d.text for d in docs] == [scrubbed]
