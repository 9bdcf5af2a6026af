"""Plots bench/results/results.json (written by the driver) into one PNG with four panels."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, dst = sys.argv[1], sys.argv[2]
r = json.load(open(src))
fig, axes = plt.subplots(2, 2, figsize=(13, 9))
title = "tenantdb benchmarks" + (" (quick smoke run)" if r.get("quick") else "")
m = r.get("machine", {})
fig.suptitle(f"{title} — {m.get('nproc')} cores, {m.get('postgres', '')}, rev {r.get('git_revision', '')}")


def bars(ax, labels, series, ylabel, title, ratios=None):
    n = len(series)
    width = 0.8 / max(n, 1)
    xs = range(len(labels))
    for i, (name, values) in enumerate(series):
        pos = [x + (i - (n - 1) / 2) * width for x in xs]
        b = ax.bar(pos, values, width, label=name)
        ax.bar_label(b, fmt="%.1f", fontsize=7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    if ratios:
        for x, text in zip(xs, ratios):
            ax.annotate(text, (x, 0), xytext=(0, -28), textcoords="offset points", ha="center", fontsize=7, color="dimgray")


prov = r.get("provisioning", [])
ax = axes[0][0]
if prov:
    labels = [f"{p['isolation']} N={p['tenants']}" for p in prov]
    bars(
        ax,
        labels,
        [
            ("operator (concurrency 8)", [p["operator_s"] for p in prov]),
            ("psql floor, sequential", [p["floor_sequential_s"] for p in prov]),
            ("psql floor, ×8", [p["floor_parallel_s"] for p in prov]),
        ],
        "seconds (all created → all Ready)",
        "1. Provisioning with the full baseline",
        [f"op/seq {p['ratio_vs_sequential']}  op/×8 {p['ratio_vs_parallel']}" for p in prov],
    )

fl = r.get("fleet_migration")
ax = axes[0][1]
if fl:
    rows = fl["rows"]
    bars(
        ax,
        [f"maxParallel {x['max_parallel']}" for x in rows],
        [(f"operator ({fl['mode']})", [x["operator_s"] for x in rows]), ("psql floor", [x["floor_s"] for x in rows])],
        "seconds",
        f"3. Fleet migration, {fl['tenants']} tenants",
        [f"ratio {x['ratio']}" for x in rows],
    )

ttr = r.get("time_to_ready")
ax = axes[1][0]
if ttr:
    rows = ttr["rows"]
    bars(
        ax,
        [f"{x['isolation']} ({x['samples']} samples)" for x in rows],
        [("p50", [x["p50_ms"] for x in rows]), ("p99", [x["p99_ms"] for x in rows])],
        "milliseconds (create → Ready)",
        "4. Single-tenant time to Ready",
    )

mem = r.get("memory")
ax = axes[1][1]
if mem:
    pts = mem["points"]
    ax.plot([p["tenants"] for p in pts], [p["rss_mib"] for p in pts], marker="o", label="RSS (rejected Tenants)")
    for p in pts:
        ax.annotate(f"{p['rss_mib']:.0f}", (p["tenants"], p["rss_mib"]), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7)
    st = r.get("steady_state")
    if st:
        ax.plot([st["tenants"]], [st["operator_rss_mib"]], marker="s", color="tab:red", linestyle="none", label=f"RSS, {st['tenants']} Ready tenants")
        ax.text(
            0.02,
            0.97,
            f"2. steady state, {st['tenants']} Ready, resync {st['resync_seconds']} s:\n"
            f"status writes {st['api_status_writes']}, API writes {st['api_writes']}\n"
            f"SQL/reconcile {st['sql_statements_per_reconcile']}, CPU/pass {st['operator_cpu_s_per_pass']} s",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            bbox=dict(boxstyle="round", fc="white", ec="lightgray"),
        )
    ax.set_xlabel("Tenants")
    ax.set_ylabel("operator RSS (MiB)")
    ax.set_title("2. Operator memory", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="lower right")

fig.tight_layout(rect=(0, 0, 1, 0.96))
fig.savefig(dst, dpi=110)

# Scenario 2c (scale): a second figure, scale.png next to the first, one panel per figure with its
# fitted line.
sc = r.get("scale")
if sc and len(sc.get("points", [])) >= 2:
    import os

    pts = sc["points"]
    xs = [p["tenants"] for p in pts]
    panels = [
        ("operator_rss_mib", "operator RSS (MiB)"),
        ("operator_cpu_ms_per_reconcile", "operator CPU per reconcile (ms)"),
        ("sql_statements_per_reconcile", "SQL statements per reconcile"),
        ("api_requests_per_reconcile", "API requests per reconcile"),
    ]
    fig2, axes2 = plt.subplots(1, len(panels), figsize=(16, 4.2))
    fig2.suptitle(
        f"2c. Scale: Ready schema Tenants, one resync period per step (resync = 30 s per 1,000) — rev {r.get('git_revision', '')}"
    )
    for ax, (key, label) in zip(axes2, panels):
        ys = [p.get(key) for p in pts]
        ax.plot(xs, ys, marker="o", label="measured")
        for x, y in zip(xs, ys):
            if y is not None:
                ax.annotate(f"{y:g}", (x, y), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7)
        fit = sc.get("fits", {}).get(key)
        if fit:
            a, b = fit["intercept"], fit["slope_per_1000"] / 1000.0
            ax.plot([0, max(xs)], [a, a + b * max(xs)], linestyle="--", color="gray",
                    label=f"fit: {a:g} + {fit['slope_per_1000']:g}/1k (r² {fit['r2']:g})")
        ax.set_xlabel("Ready Tenants")
        ax.set_title(label, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="lower right")
    fig2.tight_layout(rect=(0, 0, 1, 0.93))
    fig2.savefig(os.path.join(os.path.dirname(dst) or ".", "scale.png"), dpi=110)
