"""A generated mixed-type table: the column kinds real tables have, in one seeded, reproducible file.

`mixed_table(rows, seed, target)` gives a payments-like table whose target depends on every kind
of column, so a system that drops or mangles one kind loses accuracy:

- numbers with missing values (`age`, `income`, `basket`), a 0/1 column (`returning`);
- booleans: `member` as True/False, `newsletter` as yes/no;
- categoricals: `channel` (4 levels, some missing), `city` (40 levels) and `merchant`
  (~3000 levels, a high-cardinality column whose level carries signal);
- date-times: `signup` (ISO dates) and `paid_at` (ISO timestamps; weekday and hour matter);
- free text: `comment` (a few words, some of which carry signal);
- the target: `method` ("cash" / "credit card", binary), `tier` ("bronze" / "silver" / "gold",
  multiclass) or `amount` (a number, regression).

`bench/automl_vs_flaml.py` writes it as CSV (no download); the tests use small ones.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

TARGETS = ("method", "tier", "amount")
WORDS_GOOD = ("quick", "smooth", "great", "easy", "friendly", "fast")
WORDS_BAD = ("slow", "broken", "late", "rude", "refund", "error")
WORDS_FILL = ("the", "order", "was", "and", "delivery", "item", "store", "staff", "again", "today", "box", "price")


def mixed_table(rows: int, seed: int = 0, target: str = "method") -> pd.DataFrame:
    if target not in TARGETS:
        raise ValueError(f"target {target!r}: choose one of {', '.join(TARGETS)}")
    rng = np.random.default_rng(seed)
    age = rng.normal(42, 13, rows).clip(18, 90).round()
    income = np.exp(rng.normal(10.5, 0.6, rows)).round(2)
    basket = rng.gamma(2.0, 30.0, rows).round(2)
    returning = rng.integers(0, 2, rows)
    member = rng.random(rows) < 0.4
    newsletter = rng.random(rows) < 0.3
    channel = rng.choice(["web", "app", "store", "phone"], rows, p=[0.4, 0.3, 0.2, 0.1])
    city_effect = rng.normal(0, 0.6, 40)
    city = rng.integers(0, 40, rows)
    n_merchants = 3000
    merchant_effect = rng.normal(0, 1.0, n_merchants)
    merchant = np.minimum(rng.zipf(1.3, rows), n_merchants) - 1
    signup = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3600, rows), unit="D")
    paid = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24 * 60, rows), unit="min")
    good = rng.random(rows) < 0.3
    bad = ~good & (rng.random(rows) < 0.3)
    comment = [_comment(rng, g, b) for g, b in zip(good, bad)]

    tenure = (paid - signup).days.to_numpy() / 365.0
    hour = paid.hour.to_numpy()
    weekend = paid.day_of_week.to_numpy() >= 5
    z = (0.04 * (age - 42) - 0.8 * (np.log(income) - 10.5) + 0.9 * member - 0.6 * newsletter
         + 0.5 * returning + np.select([channel == "store", channel == "phone"], [1.2, 0.6], 0.0)
         + city_effect[city] + merchant_effect[merchant] + 0.15 * tenure + 0.8 * weekend
         + 0.7 * ((hour < 7) | (hour > 21)) + 1.0 * good - 1.0 * bad + 0.004 * (basket - 60))
    frame = pd.DataFrame({
        "id": [f"t{i}" for i in range(rows)],
        "age": _holes(rng, age, 0.05), "income": _holes(rng, income, 0.08), "basket": basket,
        "returning": returning, "member": member, "newsletter": np.where(newsletter, "yes", "no"),
        "channel": _holes(rng, channel.astype(object), 0.05), "city": [f"city_{c:02d}" for c in city],
        "merchant": [f"m{m:04d}" for m in merchant],
        "signup": signup.strftime("%Y-%m-%d"), "paid_at": paid.strftime("%Y-%m-%dT%H:%M:%S"),
        "comment": comment,
    })
    noise = rng.logistic(0, 1, rows)
    if target == "method":
        frame["method"] = np.where(z + noise > 0.0, "cash", "credit card")
    elif target == "tier":
        frame["tier"] = pd.cut(z + noise, [-np.inf, -1.0, 1.0, np.inf], labels=["bronze", "silver", "gold"]).astype(str)
    else:
        frame["amount"] = (20 + 8 * z + 0.5 * basket + 4 * noise).round(2)
    return frame


def _holes(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    out = values.astype(object) if values.dtype.kind in "OU" else values.astype(float)
    out[rng.random(len(values)) < share] = None if out.dtype == object else np.nan
    return out


def _comment(rng: np.random.Generator, good: bool, bad: bool) -> str:
    words = list(rng.choice(WORDS_FILL, rng.integers(4, 9)))
    if good:
        words.insert(int(rng.integers(0, len(words))), str(rng.choice(WORDS_GOOD)))
    if bad:
        words.insert(int(rng.integers(0, len(words))), str(rng.choice(WORDS_BAD)))
    return " ".join(words)
