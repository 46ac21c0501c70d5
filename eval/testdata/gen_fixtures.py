#!/usr/bin/python3
"""Regenerates the eval fixtures and their reference values with scikit-learn.

Run from this folder with Debian's python3-sklearn (1.2.1 when the values were made):

    apt-get install -y python3-sklearn
    /usr/bin/python3 gen_fixtures.py

For each fixture NAME it writes NAME.truth.csv and NAME.pred.csv (header Id,Predicted), optionally
NAME.topk.csv (Id,Rank,Predicted,Distance) and NAME.classes.csv (class_id,name,genus,family,train_count),
and all reference values go to expected.json:

  macro_f1       sklearn.metrics.f1_score(y_true, y_pred, average="macro")
  accuracy       sklearn.metrics.accuracy_score(y_true, y_pred)
  labels         number of labels in the union of true and predicted labels
  no_pred        labels with no predicted samples (precision ill-defined, set to 0 with a warning)
  no_true        labels with no true samples (recall ill-defined, set to 0 with a warning)
  per_class      {label: [precision, recall, f1, support]} from precision_recall_fscore_support
                 (average=None, labels=sorted union), for fixtures with at most 60 labels
  top5_accuracy  fraction of images whose true label is among the rows with Rank <= 5
  groups         {tail|medium|head: mean per-class F1 over the union labels whose train_count is
                 <= 10 | 11..100 | > 100}, the mean taken with numpy as sklearn's macro average is
  same_genus, same_family  fractions of the errors whose predicted class has the true class's genus /
                 family (same_family includes same genus)
Rows of truth and pred are matched by Id; pred rows are written in a different order on purpose.
"""
import csv
import json
import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

TAIL_MAX, MEDIUM_MAX = 10, 100


def write_labels(path, ids, labels):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["Id", "Predicted"])
        for i, l in zip(ids, labels):
            w.writerow([int(i), int(l)])


def fixture(name, ids, y_true, y_pred, rng, topk=None, classes=None):
    ids = np.asarray(ids)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    write_labels(f"{name}.truth.csv", ids, y_true)
    order = rng.permutation(len(ids))
    write_labels(f"{name}.pred.csv", ids[order], y_pred[order])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        macro = f1_score(y_true, y_pred, average="macro")
        labels = np.union1d(y_true, y_pred)
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, labels=labels)
    exp = {
        "macro_f1": float(macro),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "labels": int(len(labels)),
        "no_pred": int(np.sum(~np.isin(labels, y_pred))),
        "no_true": int(np.sum(~np.isin(labels, y_true))),
    }
    assert abs(float(np.mean(f)) - exp["macro_f1"]) == 0
    if len(labels) <= 60:
        exp["per_class"] = {str(int(l)): [float(p[i]), float(r[i]), float(f[i]), int(s[i])]
                            for i, l in enumerate(labels)}
    if topk is not None:
        rows = []
        for i, ranked in zip(ids, topk):
            for rank, (c, d) in enumerate(ranked, 1):
                rows.append((int(i), rank, int(c), d))
        rng.shuffle(rows)
        with open(f"{name}.topk.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["Id", "Rank", "Predicted", "Distance"])
            for row in rows:
                w.writerow([row[0], row[1], row[2], repr(round(float(row[3]), 4))])
        hit = [t in [c for c, _ in ranked[:5]] for t, ranked in zip(y_true, topk)]
        exp["top5_accuracy"] = float(np.mean(hit))
    if classes is not None:
        with open(f"{name}.classes.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["class_id", "name", "genus", "family", "train_count"])
            for c in sorted(classes):
                g, fam, n = classes[c]
                w.writerow([c, f"{g} sp{c}", g, fam, n])
        counts = np.array([classes[int(l)][2] for l in labels])
        groups = {}
        for gname, mask in (("tail", counts <= TAIL_MAX),
                            ("medium", (counts > TAIL_MAX) & (counts <= MEDIUM_MAX)),
                            ("head", counts > MEDIUM_MAX)):
            if mask.any():
                groups[gname] = float(np.mean(f[mask]))
        exp["groups"] = groups
        err = y_true != y_pred
        if err.any():
            tg = np.array([classes[int(c)][0] for c in y_true[err]])
            pg = np.array([classes[int(c)][0] for c in y_pred[err]])
            tf = np.array([classes[int(c)][1] for c in y_true[err]])
            pf = np.array([classes[int(c)][1] for c in y_pred[err]])
            exp["same_genus"] = float(np.mean(tg == pg))
            exp["same_family"] = float(np.mean(tf == pf))
    return exp


def make_classes(ids, rng):
    """Taxonomy: 4 species per genus, 5 genera per family; train counts log-uniform in 1..1000."""
    out = {}
    for k, c in enumerate(sorted(ids)):
        genus = f"G{k // 4:04d}"
        family = f"F{k // 20:03d}aceae"
        out[int(c)] = (genus, family, int(np.exp(rng.uniform(0, np.log(1000)))))
    return out


def make_topk(y_true, y_pred, universe, rng, k, p_in_top5=0.8, ties=False):
    out = []
    for t, pr in zip(y_true, y_pred):
        ranked = [int(pr)]
        if t != pr and rng.random() < p_in_top5:
            ranked.insert(int(rng.integers(1, k if rng.random() < 0.5 else 5)), int(t))
        while len(ranked) < k:
            c = int(rng.choice(universe))
            if c not in ranked:
                ranked.append(c)
        ranked = ranked[:k]
        if ties:
            d = sorted(float(x) for x in rng.integers(0, 3, size=k))
        else:
            d = sorted(float(x) for x in rng.gamma(2.0, 1.0, size=k))
        out.append(list(zip(ranked, d)))
    return out


def main():
    rng = np.random.default_rng(20200)
    expected = {}

    ids = np.arange(100, 110)
    expected["basic"] = fixture("basic", ids, [0, 0, 0, 1, 1, 2, 2, 2, 3, 3],
                                [0, 0, 1, 1, 1, 2, 0, 2, 3, 2], rng)
    # Labels 7 and 9 are only predicted (recall ill-defined, F1 0 but they count in the mean).
    expected["only_pred"] = fixture("only_pred", np.arange(1, 9), [1, 1, 2, 2, 3, 3, 3, 1],
                                    [1, 7, 2, 9, 3, 3, 7, 1], rng)
    # Labels 3..6 are never predicted (precision ill-defined).
    expected["only_true"] = fixture("only_true", np.arange(50, 58), [1, 2, 3, 4, 5, 6, 1, 2],
                                    [1, 2, 1, 2, 1, 2, 1, 1], rng)
    # Every image predicted as one class; top-k distances tied.
    yt = [4, 4, 5, 5, 6, 7, 7, 8]
    yp = [5] * 8
    tk = [[(5, 1.0), (t if t != 5 else 13, 1.0), (9, 1.0), (10, 2.0), (11, 2.0), (12, 2.0)] for t in yt]
    tk[1] = [(5, 1.0), (9, 1.0), (10, 1.0), (11, 1.0), (12, 1.0), (4, 1.0)]  # true label at rank 6
    expected["ties"] = fixture("ties", np.arange(1000, 1008), yt, yp, rng, topk=tk)
    expected["all_wrong"] = fixture("all_wrong", np.arange(5), [1, 2, 3, 4, 5], [6, 7, 8, 9, 10], rng)
    expected["perfect"] = fixture("perfect", np.arange(6), [3, 1, 4, 1, 5, 9], [3, 1, 4, 1, 5, 9], rng)
    expected["single"] = fixture("single", [42], [7], [7], rng)

    # Medium: 1,000 images over 300 classes with taxonomy and a top-8 file.
    universe = np.sort(rng.choice(32094, size=300, replace=False))
    classes = make_classes(universe, rng)
    yt = rng.choice(universe, size=1000, p=np.linspace(2, 0.1, 300) / np.linspace(2, 0.1, 300).sum())
    yp = yt.copy()
    byk = sorted(classes)
    for i in range(len(yp)):
        u = rng.random()
        if u < 0.25:  # a sibling in the same genus
            k = byk.index(int(yt[i]))
            yp[i] = byk[min(len(byk) - 1, (k // 4) * 4 + int(rng.integers(0, 4)))]
        elif u < 0.45:
            yp[i] = rng.choice(universe)
    ids = rng.choice(138292, size=1000, replace=False)
    expected["medium"] = fixture("medium", ids, yt, yp, rng,
                                 topk=make_topk(yt, yp, universe, rng, 8), classes=classes)

    # Big: ~10k labels, 25,000 images, skewed; 400 labels exist only as predictions.
    universe = np.sort(rng.choice(32094, size=10400, replace=False))
    classes = make_classes(universe, rng)
    true_pool = universe[:10000]
    w = 1.0 / np.arange(1, 10001) ** 0.6
    yt = rng.choice(true_pool, size=25000, p=w / w.sum())
    yp = yt.copy()
    byk = {c: k for k, c in enumerate(sorted(classes))}
    srt = sorted(classes)
    for i in range(len(yp)):
        u = rng.random()
        if u < 0.15:
            k = byk[int(yt[i])]
            yp[i] = srt[min(len(srt) - 1, (k // 4) * 4 + int(rng.integers(0, 4)))]
        elif u < 0.45:
            yp[i] = rng.choice(universe)
    ids = rng.choice(138292, size=25000, replace=False)
    expected["big"] = fixture("big", ids, yt, yp, rng, classes=classes)

    with open("expected.json", "w") as f:
        json.dump({"tail_max": TAIL_MAX, "medium_max": MEDIUM_MAX, "fixtures": expected}, f, indent=1,
                  sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
