"""Entity name lists for the generated NER / relation / QA sets, and their disjoint train/val/test pools.

zh: words from jieba's dictionary (`jieba/dict.txt`, MIT; lines `word frequency part-of-speech`), by tag:
- PER: `nr` words of 3 Chinese characters whose first character is one of `ZH_SURNAMES` (common surnames) and
  whose last is not in `ZH_NOT_NAME_END` (the tag is noisy: it also marks "贾政喝", "苏公祠" ...);
- LOC: `ns` words of 3-6 characters ending in an administrative or geographic suffix (`ZH_LOC_SUFFIXES`);
- ORG: `nt` words of 4-10 characters ending in an organisation suffix (`ZH_ORG_SUFFIXES`).
en: PER = a stated list of first names x surnames (`EN_FIRST`, `EN_LAST`); LOC = city names from the IANA time
zone database (the standard library's `zoneinfo.available_timezones()`, e.g. "America/New_York" -> "New York");
ORG = stated name stems x organisation kinds (`EN_ORG_STEMS`, `EN_ORG_KINDS`). The lists are real words, the
sentences that use them are generated from templates.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import re
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llmlab.data.nlp_sets._common import SPLITS, Splits, check_lang, check_sizes, split_pool

ZH_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
ZH_NOT_NAME_END = frozenset(
    "笑喝罢说道叹问答区城县市祠庙寺山河湖镇村省州们等人氏家府帝宗王公侯生姐师傅爷娘嫂哥弟妹叔伯矿"
)
ZH_LOC_SUFFIXES = tuple("省市县区镇乡村州岛湖山江河")
ZH_ORG_SUFFIXES = ("大学", "学院", "公司", "银行", "医院", "研究所", "研究院", "委员会", "集团", "中学", "出版社",
                   "协会", "博物馆", "图书馆", "电视台")  # fmt: skip
EN_FIRST = (
    "Alice Amelia Andrew Anna Benjamin Carlos Charlotte Chloe Daniel David Diego Elena Emily Emma Ethan Fatima "
    "Grace Hannah Henry Isaac Isabella James Jasmine John Julia Kevin Laura Leo Liam Lucas Maria Mason Mia Michael "
    "Nadia Noah Olivia Omar Oscar Priya Rachel Ravi Samuel Sarah Sofia Thomas Victor William Yusuf Zoe"
).split()
EN_LAST = (
    "Adams Baker Bennett Brooks Carter Clarke Collins Cooper Davies Edwards Evans Fischer Foster Garcia Gray Green "
    "Hall Harris Hughes Jensen Johnson Kelly Khan Kim Lopez Martin Miller Moore Morgan Murphy Nguyen Novak Patel "
    "Perez Price Reed Reyes Richards Rossi Russell Schmidt Scott Silva Sullivan Taylor Turner Walker Ward Young"
).split()
EN_ORG_STEMS = ("Acme", "Apex", "Aurora", "Beacon", "Blue Harbor", "Bright Path", "Cedar Crest", "Cobalt", "Crescent",
                "Delta", "Evergreen", "Falcon", "Granite", "Greenfield", "Horizon", "Ironwood", "Juniper", "Keystone",
                "Lakeside", "Lumen", "Maple", "Meridian", "Northwind", "Oakridge", "Orion", "Pinnacle", "Quantum",
                "Redwood", "Riverside", "Silver Oak", "Summit", "Sunrise", "Tidewater", "Vertex", "Westbrook",
                "Willow", "Zenith")  # fmt: skip
EN_ORG_KINDS = ("Bank", "Systems", "Labs", "University", "Hospital", "Institute", "Motors", "Foods", "Airlines",
                "Insurance", "Press", "Energy")  # fmt: skip
TZ_REGIONS = ("Africa", "America", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")
POOL_FRACTIONS = (0.8, 0.1, 0.1)


def jieba_dict_path() -> Path:
    """jieba's main dictionary file inside the installed package."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the jieba package is not installed; pip install jieba")
    return Path(list(spec.submodule_search_locations)[0]) / "dict.txt"


@functools.lru_cache(maxsize=1)
def zh_names() -> dict[str, tuple[str, ...]]:
    """{"PER", "LOC", "ORG"}: sorted zh name lists from jieba's dictionary (filtered as the module says)."""
    han = re.compile(r"^[\u4e00-\u9fff]+$")
    out: dict[str, set[str]] = {"PER": set(), "LOC": set(), "ORG": set()}
    with open(jieba_dict_path(), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3 or not han.match(parts[0]):
                continue
            word, tag = parts[0], parts[2]
            if tag == "nr" and len(word) == 3 and word[0] in ZH_SURNAMES and word[-1] not in ZH_NOT_NAME_END:
                out["PER"].add(word)
            elif tag == "ns" and 3 <= len(word) <= 6 and word.endswith(ZH_LOC_SUFFIXES):
                out["LOC"].add(word)
            elif tag == "nt" and 4 <= len(word) <= 10 and word.endswith(ZH_ORG_SUFFIXES):
                out["ORG"].add(word)
    return {k: tuple(sorted(v)) for k, v in out.items()}


@functools.lru_cache(maxsize=1)
def en_names() -> dict[str, tuple[str, ...]]:
    """{"PER", "LOC", "ORG"}: sorted en name lists (stated lists; cities from the IANA time zone names)."""
    cities = set()
    for zone in zoneinfo.available_timezones():
        parts = zone.split("/")
        if len(parts) == 2 and parts[0] in TZ_REGIONS and re.fullmatch(r"[A-Za-z_]+", parts[1]):
            cities.add(parts[1].replace("_", " "))
    return {"PER": _people(EN_FIRST, EN_LAST), "LOC": tuple(sorted(cities)), "ORG": _orgs(EN_ORG_STEMS)}


def _people(firsts: tuple[str, ...] | list[str], lasts: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(sorted(f"{first} {last}" for first in firsts for last in lasts))


def _orgs(stems: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(sorted(f"{stem} {kind}" for stem in stems for kind in EN_ORG_KINDS))


def name_pools(lang: str, seed: int) -> dict[str, dict[str, tuple[str, ...]]]:
    """{split: {type: names}}: each type's names cut 80/10/10 into disjoint train/val/test pools (seeded), so a
    test sentence only holds names that no training sentence holds. English people are split by surname (and
    their first names too) and organisations by name stem, so no test surname or stem occurs in training."""
    check_lang(lang)
    names = zh_names() if lang == "zh" else en_names()
    pools: dict[str, dict[str, tuple[str, ...]]] = {s: {} for s in SPLITS}
    for i, (etype, values) in enumerate(sorted(names.items())):
        if lang == "en" and etype == "PER":
            firsts = split_pool(sorted(EN_FIRST), POOL_FRACTIONS, seed * 31 + i)
            lasts = split_pool(sorted(EN_LAST), POOL_FRACTIONS, seed * 31 + i + 7)
            parts = [list(_people(fa, la)) for fa, la in zip(firsts, lasts, strict=True)]
        elif lang == "en" and etype == "ORG":
            parts = [list(_orgs(stems)) for stems in split_pool(sorted(EN_ORG_STEMS), POOL_FRACTIONS, seed * 31 + i)]
        else:
            parts = split_pool(values, POOL_FRACTIONS, seed * 31 + i)
        for split, part in zip(SPLITS, parts, strict=True):
            pools[split][etype] = tuple(part)
    return pools


Pool = dict[str, tuple[str, ...]]  # {entity type: names}


def build_name_splits(
    kind: str,
    lang: str,
    seed: int,
    sizes: Mapping[str, int | None],
    default_sizes: Mapping[str, int],
    make_rows: Callable[[Pool, random.Random, int, str], list[dict[str, Any]]],
) -> Splits:
    """The splits of a templated set: `make_rows(names of the split, rng, n, split)` for each split, with a
    Random seeded by (kind, lang, seed, split) and the split's own name pool (`name_pools`), so names never
    cross splits and each split is reproducible on its own.

    Raises:
        ValueError: an unknown `lang` or a negative size.
    """
    check_lang(lang)
    check_sizes(**sizes)
    pools = name_pools(lang, seed)
    out: Splits = {}
    for split in SPLITS:
        rng = random.Random(f"{kind}-{lang}-{seed}-{split}")
        n = default_sizes[split] if sizes[split] is None else sizes[split]
        out[split] = make_rows(pools[split], rng, n, split)
    return out
