"""Jobs of the one-vs-all protocol: shard, class and seed parsing, job keys (no training)."""

from __future__ import annotations

import re

import pytest

from fgad.benchmark.jobs import Job, parse_classes, parse_seeds, parse_shard, shard
from fgad.errors import ConfigError

NAMES = ["airplane", "auto mobile", "bird", "cat", "deer"]


def make_jobs(n: int) -> list[Job]:
    return [Job("ds", "ours", c % 7, f"c{c}", c // 7, "tiny") for c in range(n)]


# ------------------------------------------------------------------------------------ shards
@pytest.mark.parametrize("text, expected", [
    ("0/4", (0, 4)), ("3/4", (3, 4)), ("0/1", (0, 1)), (" 2 / 5 ", (2, 5)), (None, None),
])
def test_parse_shard_accepts_i_of_n(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "5/4", "1/0", "0/0", "a/b", "1", "1/2/3", "-1/4", "", "1.0/2"])
def test_parse_shard_refuses_bad_specs(text):
    with pytest.raises(ConfigError, match="shard"):
        parse_shard(text)


@pytest.mark.parametrize("n_jobs", [0, 1, 5, 12, 13])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 20])
def test_shards_are_disjoint_and_cover_every_job(n_jobs, n):
    jobs = make_jobs(n_jobs)
    slices = [shard(jobs, i, n) for i in range(n)]
    keys = [(j.normal_class, j.seed) for s in slices for j in s]
    assert len(keys) == len(set(keys)) == n_jobs  # disjoint ...
    assert sorted(keys) == sorted((j.normal_class, j.seed) for j in jobs)  # ... and complete
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) <= 1  # balanced
    assert shard(jobs, 0, 1) == jobs


def test_shard_is_stable_across_calls():
    jobs = make_jobs(10)
    assert shard(jobs, 1, 3) == shard(list(jobs), 1, 3)


# ----------------------------------------------------------------------------------- classes
@pytest.mark.parametrize("text, expected", [
    (None, [0, 1, 2, 3, 4]),
    ("all", [0, 1, 2, 3, 4]),
    (" ALL ", [0, 1, 2, 3, 4]),
    ("2", [2]),
    ("0-2", [0, 1, 2]),
    ("3,1", [3, 1]),
    ("1-2,4", [1, 2, 4]),
    ("bird", [2]),
    ("auto mobile,deer", [1, 4]),
    ("cat, 0-1", [3, 0, 1]),
    ("1,1,0-2", [1, 0, 2]),  # duplicates once, first-seen order
    ("1,,2,", [1, 2]),
])
def test_parse_classes(text, expected):
    assert parse_classes(text, NAMES) == expected


@pytest.mark.parametrize("text, match", [
    ("5", "out of range"),
    ("3-7", "out of range"),
    ("horse", "unknown class"),
    ("Bird", "unknown class"),
    ("-1", "unknown class"),
    ("1-x", "unknown class"),
    (",", "no classes"),
    ("2-1", "no classes"),
])
def test_parse_classes_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_classes(text, NAMES)


def test_parse_classes_prefers_names_only_for_non_numbers():
    # A numeric part is an index even where a class is named like a number.
    assert parse_classes("1", ["1", "0"]) == [1]
    assert parse_classes("0-1", ["x", "y"]) == [0, 1]


# ------------------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("text, expected", [
    (None, [0]),
    ("0", [0]),
    ("3", [3]),
    ("0-4", [0, 1, 2, 3, 4]),
    ("1,5", [1, 5]),
    (" 1 , 2 ", [1, 2]),
    ("7,0-1", [7, 0, 1]),
])
def test_parse_seeds(text, expected):
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("text", ["x", "-1", "1.5", "0-a", ""])
def test_parse_seeds_errors(text):
    with pytest.raises(ConfigError, match="seeds"):
        parse_seeds(text)


def test_parse_seeds_drops_duplicates_like_parse_classes():
    assert parse_seeds("0,0-1") == [0, 1]


# -------------------------------------------------------------------------------------- keys
@pytest.mark.parametrize("name", ["a/b c:*", "../..", "", "x" * 200, "é\\n\t?<>|\"'", "CON", "a b"])
def test_job_key_is_file_system_safe(name):
    job = Job("ds", "ours", 3, name, 2, "tiny")
    key = job.key
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key), key
    assert "/" not in key and "\\" not in key and not key.startswith(".")
    assert len(key) <= 100
    assert key.startswith("class-0003-") and key.endswith("__seed-2")


def test_job_key_is_unique_per_class_and_seed():
    # Names that sanitise alike still differ by index; seeds differ by suffix.
    a = Job("ds", "ours", 1, "a/b c:*", 0, "tiny")
    b = Job("ds", "ours", 2, "a_b_c_", 0, "tiny")
    c = Job("ds", "ours", 1, "a/b c:*", 1, "tiny")
    assert len({a.key, b.key, c.key}) == 3
    assert a.key == "class-0001-a_b_c___seed-0"


def test_job_key_ignores_method_dataset_and_preset():
    # The method and dataset are folders above the record; the key names the class and seed only.
    a = Job("ds1", "ours", 0, "n", 0, "tiny")
    b = Job("ds2", "mhrot", 0, "n", 0, "paper")
    assert a.key == b.key


def test_job_to_dict_round_trips():
    job = Job("ds", "mean-distance", 2, "a/b c:*", 4, "quick")
    d = job.to_dict()
    assert d == {"dataset": "ds", "method": "mean-distance", "normal_class": 2, "class_name": "a/b c:*",
                 "seed": 4, "preset": "quick"}
    assert Job(**d) == job
