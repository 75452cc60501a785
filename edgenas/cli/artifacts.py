"""``edgenas package | verify | report``: the artifacts a user ships and the page a user reads.

Only typer is imported here; the work (``edgenas.bundle``, ``edgenas.bundle.verify``,
``edgenas.report``) and rich are imported inside the commands so ``edgenas --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app, handled

STATUS_STYLE = {"ok": "[green]ok[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]", "info": "[cyan]info[/]"}


@app.command()
@handled
def package(
    run_dir: Path = typer.Argument(..., help="A finished run directory (edgenas build --out)."),
    target: List[str] = typer.Option(..., "--target", "-t", help="Target to bundle for (repeat for several). "
                                     "Other targets than the run's are compiled from its model_int8.onnx."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where bundles go: OUT/<target>/ (default: RUN_DIR)."),
    key: Optional[Path] = typer.Option(None, "--key", help="Ed25519 private key (PEM) to sign with. Default: "
                                       "$EDGENAS_SIGNING_KEY, else your own key in ~/.config/edgenas (made on first use)."),
):
    """Write a deployable bundle per target: library, ONNX, arch, recipe, tuning slice, manifest, signature."""
    from ..bundle import package as make_bundle
    from ..bundle.manifest import MANIFEST, BundleManifest
    from ..bundle.signing import signing_key
    from ..records import load
    from ..target import get_target
    from .view import console, kv_table, out as stdout

    signer = signing_key(key)
    for spec in [get_target(name) for name in target]:   # every --target checked before any work
        path = make_bundle(run_dir, spec, out, progress=lambda m: console.print(f"[cyan]•[/] {m}", highlight=False),
                           key=signer)
        m = load(path / MANIFEST, BundleManifest)
        lat = m.latency
        rows = [("bundle", str(path)), ("target", f"{m.target} {m.target_dict}"), ("library", m.library),
                ("int8 ops", ", ".join(f"{k}×{v}" for k, v in (m.compile.get("int8_ops") or {}).items()) or "none"),
                ("fell back to float", str(len(m.compile.get("fallbacks") or []))),
                ("accuracy fp32 / int8", f"{m.accuracy['fp32'] * 100:.2f} % / {m.accuracy['int8_onnx'] * 100:.2f} % "
                                         f"({m.data}, n={m.accuracy.get('n')})"),
                ("latency", f"median {lat['median_ms']:.4f} ms, p90 {lat['p90_ms']:.4f} ms" if lat else "-"),
                ("measured", m.latency_how),
                ("tuning slice", f"{m.tuning['records']} records for {m.tuning['tasks_with_record']}/{m.tuning['tasks']} tasks"
                                 if m.tuning["db_records"] else f"none: {m.tuning['db']} holds no records (untuned kernels)"),
                ("files", f"{len(m.files)} + {MANIFEST}, SHA256SUMS, SHA256SUMS.sig"),
                ("signed by", f"ed25519 key {signer.fingerprint} ({signer.source})"
                              + (f"; public key: {signer.public_file}" if signer.public_file else ""))]
        stdout.print(kv_table(f"edgenas package {m.target}", rows))


@app.command()
@handled
def verify(
    bundles: List[Path] = typer.Argument(..., help="Bundle directories (OUT/<target>/)."),
    strict: bool = typer.Option(False, "--strict", help="Count checks that could not run here (skip) as failures, "
                                "an unchecked origin included."),
    trusted_key: Optional[List[Path]] = typer.Option(None, "--trusted-key", help="Public key (PEM) the bundle must be "
                                                     "signed by (repeat for several). Default: the keys you sign with."),
):
    """Check the layout, the signature and every hash; only then load the library and compare its outputs."""
    from rich.table import Table

    from ..bundle.signing import load_public
    from ..bundle.verify import verify_bundle
    from ..errors import EdgenasError
    from .view import out as stdout

    trusted = [load_public(p) for p in trusted_key] if trusted_key else None
    summary, failed = [], []
    for b in bundles:
        v = verify_bundle(b, trusted)
        t = Table(title=f"edgenas verify {b}", title_justify="left")
        for col in ("check", "status", "detail"):
            t.add_column(col, overflow="fold")
        for c in v.checks:
            t.add_row(c.name, STATUS_STYLE.get(c.status, c.status), c.detail)
        stdout.print(t)
        bad = v.failures(strict)
        failed += [f"{b}: {c.detail}" for c in bad]
        summary.append((b, v, bad))
    if len(bundles) > 1:
        t = Table(title="bundles", title_justify="left")
        for col in ("bundle", "target", "result", "checks ok / skip / fail", "latency (median)"):
            t.add_column(col, overflow="fold")
        for b, v, bad in summary:
            n = {s: sum(c.status == s for c in v.checks) for s in ("ok", "skip", "fail")}
            lat = v.manifest.latency if v.manifest else None
            t.add_row(str(b), v.manifest.target if v.manifest else "?", "[bold red]FAIL[/]" if bad else "[green]verified[/]",
                      f"{n['ok']} / {n['skip']} / {n['fail']}", f"{lat['median_ms']:.4f} ms" if lat else "not measured")
        stdout.print(t)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise EdgenasError(f"verification failed: {failed[0]}{more}")


@app.command()
@handled
def report(
    run_dir: Path = typer.Argument(..., help="A run directory (finished or not)."),
    baselines: Optional[Path] = typer.Option(None, "--baselines", help="baselines.json from scripts/bench_search.py "
                                             "(searched arms, random search, hand-designed width sweep; mean ± std "
                                             "over seeds): copied into RUN_DIR and shown beside the searched model."),
):
    """(Re)generate RUN_DIR/report.html and the PNG figures in RUN_DIR/report/.

    With --baselines FILE the file is validated and copied atomically to RUN_DIR/baselines.json
    (replacing any earlier one), so later `edgenas report RUN_DIR` calls keep showing it."""
    from ..report import write_report
    from ..report.baselines import install_baselines
    from .view import out as stdout

    if baselines is not None:
        install_baselines(baselines, run_dir)
        stdout.print(f"baselines: {baselines} -> {run_dir / 'baselines.json'}", highlight=False)
    path = write_report(run_dir)
    stdout.print(f"report: {path}  (figures in {path.parent / 'report'})", highlight=False)
