"""Bad input gets a one-line error naming the file, key or frame, exit status 2, and nothing left behind
(issue #18 item 1). One row per case; each row would fail on a traceback (exit 1), a silent success (exit 0) or a
message that does not name what is wrong."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from harness.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
FOUNDATION = ROOT / "models" / "foundation" / "carbonates-mace-mini.model"


def _corrupt_gzip(d: Path) -> Path:
    p = d / "frames.extxyz.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"this is not deflate data" * 4)
    return p


def _truncated_gzip(d: Path) -> Path:
    p = d / "frames.extxyz.gz"
    p.write_bytes(gzip.compress(b"3\nProperties=species:S:1:pos:R:3 REF_energy=1.0\n" * 50)[:60])
    return p


def _dup_yaml(d: Path) -> Path:
    p = d / "spec.yaml"
    p.write_text("name: a\ndescription: x\nname: b\n")
    return p


def _binary_yaml(d: Path) -> Path:
    p = d / "spec.yaml"
    p.write_bytes(FOUNDATION.read_bytes()[:200])
    return p


def _dup_nested(d: Path) -> Path:
    text = (ROOT / "protocols" / "ci.yaml").read_text().replace("npt: {length_ps: 0.05,", "npt: {length_ps: 0.05, length_ps: 0.1,")
    p = d / "protocol.yaml"
    p.write_text(text)
    return p


def _protocol(edit):
    def make(d: Path) -> Path:
        p = d / "protocol.yaml"
        p.write_text(edit((ROOT / "protocols" / "ci.yaml").read_text()))
        return p
    return make


def _md(f: Path) -> list[str]:
    return ["md", "--model", str(FOUNDATION), "--protocol", str(f), "-e", "npt", "-w", str(f.parent / "ws")]


def _a_file(d: Path) -> Path:
    p = d / "afile"
    p.write_text("not a folder")
    return p


def _al_spec(oracle: str):
    def make(d: Path) -> Path:
        text = (ROOT / "protocols" / "al" / "ci.yaml").read_text()
        text = text.replace("../../datasets/", str(ROOT / "datasets") + "/").replace("../ci.yaml",
                                                                                     str(ROOT / "protocols" / "ci.yaml"))
        p = d / "al.yaml"
        p.write_text(text + f"oracle: {oracle}\n")
        return p
    return make


def _al_initial(d: Path) -> Path:
    p = _al_spec("{name: xtb}")(d)
    text = p.read_text()
    assert "initial_subsets: [OPLS]" in text
    p.write_text(text.replace("initial_subsets: [OPLS]", "initial_subsets: [NOPE]"))
    return p


def _frames_file(d: Path) -> Path:
    from ase.build import molecule

    from harness.io import write_frames

    p = d / "frames.extxyz"
    write_frames(p, [molecule("H2O")])
    return p


def _sweep_with(edit):
    def make(d: Path) -> Path:
        text = (ROOT / "protocols" / "sweeps" / "ci.yaml").read_text().split("diagnostics:")[0]
        text = text.replace("../../datasets/", str(ROOT / "datasets") + "/").replace("../ci.yaml",
                                                                                     str(ROOT / "protocols" / "ci.yaml"))
        p = d / "sweep.yaml"
        p.write_text(edit(text))
        return p
    return make


def _a_folder(d: Path) -> Path:
    p = d / "afolder"
    p.mkdir()
    return p


def _nothing(d: Path) -> Path:
    return d / "missing-workspace"


def _empty_store(d: Path) -> Path:
    from harness.workflow.store import Store

    ws = d / "ws"
    ws.mkdir()
    Store(ws / "harness.sqlite").close()
    return ws


_HEAD = 'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:REF_forces:R:{n} {energy}pbc="T T T"\n'


def _import(energy: str = "REF_energy=-1.0 ", n: int = 3, f0: str = "0 0 0"):
    """A dataset with one import source whose only frame has the given energy field and forces."""
    def make(d: Path) -> Path:
        cols = " ".join(["0"] * n)
        (d / "frames.extxyz").write_text("2\n" + _HEAD.format(n=n, energy=energy) + f"H 0 0 0 {f0 if n == 3 else cols}\n"
                                         f"H 0.7 0 0 {cols}\n")
        p = d / "ds.yaml"
        p.write_text("name: imp\ndata_dir: data\nseed: 0\nreference: {name: xtb}\n"
                     "sources:\n  ext: {kind: import, file: frames.extxyz, config_type: liquid}\nsubsets:\n  All: [ext]\n")
        return p
    return make


def _h5md(edit):
    """A small harness H5MD trajectory (two water molecules, 20 frames) with ``edit`` applied."""
    def make(d: Path) -> Path:
        import h5py
        import numpy as np

        p = d / "traj.h5md"
        t, n = 20, 6
        rng = np.random.default_rng(0)
        base = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]] * 2, float) + np.repeat([[1, 1, 1], [4, 4, 4]], 3, 0)
        pos = base + rng.normal(0, 0.01, (t, n, 3)).cumsum(0)
        d_ = {"position/value": pos, "position/time": np.arange(t) * 0.01, "position/step": np.arange(t) * 20,
              "box/edges/value": np.repeat(np.eye(3)[None] * 8.0, t, 0), "species": np.array([8, 1, 1] * 2, np.int32),
              "masses": np.array([16.0, 1.0, 1.0] * 2), "mol_id": np.array([0, 0, 0, 1, 1, 1], np.int32)}
        edit(d_)
        with h5py.File(p, "w") as f:
            for k, v in d_.items():
                f[f"particles/all/{k}"] = v
        return p
    return make


def _nan_frame(d):
    d["position/value"][7, 2, 1] = float("nan")


def _short_species(d):
    d["species"] = d["species"][:4]


def _bad_extxyz(kind: str):
    def make(d: Path) -> Path:
        from ase.build import molecule

        from harness.io import write_frames

        p = d / "frames.extxyz"
        write_frames(p, [molecule("H2O")] * 3)
        lines = p.read_text().splitlines()
        starts = [i for i, l in enumerate(lines) if l.strip() == "3"]
        if kind == "value":
            lines[starts[2] + 3] = "H 0.0 zero 0.0"
        else:
            lines[starts[1]] = "5"
        p.write_text("\n".join(lines) + "\n")
        return p
    return make


def _text(name: str, content: str):
    def make(d: Path) -> Path:
        p = d / name
        p.write_text(content)
        return p
    return make


def _ci_protocol_edit(old: str, new: str):
    return _protocol(lambda t: (t.replace(old, new) if old in t else pytest.fail(f"{old!r} not in ci.yaml")))


def _ev(f: Path) -> list[str]:
    return ["evaluate", str(f), "-m", str(FOUNDATION)]


def _al_edit(old: str, new: str):
    def make(d: Path) -> Path:
        p = _al_spec("{name: xtb}")(d)
        text = p.read_text()
        assert old in text, old
        p.write_text(text.replace(old, new))
        return p
    return make


def _ft(body: str):
    """The ci sweep (no diagnostics) with a finetune section."""
    return _sweep_with(lambda t: t + "finetune:\n" + body)


def _diag(body: str):
    return _sweep_with(lambda t: t + "diagnostics:\n" + body)


def _dataset(sources: str, subsets: str, validation: str = ""):
    return _text("ds.yaml", "name: d\ndata_dir: data\nseed: 0\nreference: {name: xtb}\nsources:\n" + sources
                 + "subsets:\n" + subsets + (("validation:\n" + validation) if validation else ""))


def _run(f: Path) -> list[str]:
    return ["sweep", "run", str(f), "-w", str(f.parent / "ws")]


def _al(f: Path) -> list[str]:
    return ["al", "run", str(f), "-w", str(f.parent / "ws")]


def _train(*extra):
    return lambda f: ["train", "-d", str(ROOT / "datasets" / "ec-emc-xtb.yaml"), "-s", "OPLS", "-a", "mace", "-n", "1",
                      "-w", str(f / "ws"), *extra]


_LIQ = "  liquid: {kind: liquid_md, config_type: liquid, composition: EC=2, stride_ps: 1, runs: [{ensemble: nvt, temperature_K: 300, " \
       "density_g_cm3: 1.2, n_frames: 1}]}\n"


CASES = {
    # name: (files maker, argv built from the made file, message the error must contain)
    "corrupt gzip body (evaluate)": (_corrupt_gzip, lambda f: ["evaluate", str(f), "-m", str(FOUNDATION)],
                                     ["frames.extxyz.gz", "cannot read"]),
    "truncated gzip (evaluate)": (_truncated_gzip, lambda f: ["evaluate", str(f), "-m", str(FOUNDATION)],
                                  ["frames.extxyz.gz", "cannot read"]),
    "duplicate key (sweep spec)": (_dup_yaml, lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")],
                                   ["spec.yaml:3", "duplicate key 'name'", "line 1"]),
    "binary file as YAML (sweep spec)": (_binary_yaml, lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")],
                                         ["spec.yaml", "not a text"]),
    "binary file as YAML (dataset)": (_binary_yaml, lambda f: ["dataset", "build", str(f)], ["spec.yaml", "not a text"]),
    "duplicate key in a flow mapping (protocol)": (
        _dup_nested, lambda f: ["md", "--model", str(FOUNDATION), "--protocol", str(f), "-e", "npt",
                                "-w", str(f.parent / "ws")], ["protocol.yaml:", "duplicate key 'length_ps'"]),
    "horizon longer than the runs (protocol)": (
        _protocol(lambda t: t.replace("horizon_ps: 0.05", "horizon_ps: 0.5")), _md,
        ["protocol.yaml", "horizon_ps 0.5 is longer than the shortest run (0.05 ps)"]),
    "equilibration as long as the runs (protocol)": (
        _protocol(lambda t: t.replace("equilibration_ps: 0.01", "equilibration_ps: 0.05")), _md,
        ["protocol.yaml", "equilibration_ps 0.05 leaves nothing"]),
    "output under an existing file (box)": (
        _a_file, lambda f: ["box", "-c", "EC=4,EMC=8", "--density", "1.2", "-o", str(f / "x.extxyz")],
        ["afile is a file, not a folder"]),
    "workspace under an existing file (md)": (
        _a_file, lambda f: ["md", "--model", str(FOUNDATION), "--protocol", str(ROOT / "protocols" / "ci.yaml"),
                            "-e", "npt", "-w", str(f / "ws")], ["afile is a file, not a folder"]),
    "AL oracle that is no calculator (checked at plan time)": (
        _al_spec("{name: 'ase:os.system'}"), lambda f: ["al", "run", str(f), "-w", str(f.parent / "ws")],
        ["oracle", "system is not an ASE Calculator class in os"]),
    "AL oracle with an unknown option": (
        _al_spec("{name: 'ase:ase.calculators.lj.LennardJones', options: {sigmaa: 2.5}}"),
        lambda f: ["al", "run", str(f), "-w", str(f.parent / "ws")], ["oracle", "unknown option(s) sigmaa"]),
    "reference calculator with an unknown option (label)": (
        _frames_file, lambda f: ["label", str(f), "-o", str(f.parent / "out.extxyz"), "-r",
                                 "ase:ase.calculators.emt.EMT", "--reference-options", '{"cutof": 3}'],
        ["unknown option(s) cutof", "EMT takes"]),
    "unknown subset in a sweep spec": (
        _sweep_with(lambda t: t.replace("subsets: [OPLS, OPLS+VS]", "subsets: [OPLS, OPLS+XX]")),
        lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")],
        ["sweep.yaml:", "subsets: unknown subset(s) 'OPLS+XX' of ec-emc-xtb.yaml"]),
    "unknown reference subset in a sweep spec": (
        _sweep_with(lambda t: t.replace("reference: {arch: gap, subset: OPLS+VS", "reference: {arch: gap, subset: Ful")),
        lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")], ["sweep.yaml:", "reference.subset", "'Ful'"]),
    "unknown initial subset in an AL spec": (
        _al_initial,
        lambda f: ["al", "run", str(f), "-w", str(f.parent / "ws")], ["al.yaml:", "initial_subsets", "'NOPE'"]),
    "models list of a missing workspace": (
        _nothing, lambda f: ["models", "list", "-w", str(f)], ["missing-workspace: no such workspace"]),
    "score in a missing workspace": (
        _nothing, lambda f: ["score", "-w", str(f), "--model", str(FOUNDATION), "--reference", str(FOUNDATION)],
        ["missing-workspace: no such workspace"]),
    "import: energy not a number": (_import(energy="REF_energy=abc "), lambda f: ["dataset", "build", str(f)],
                                    ["frames.extxyz: frame 0: REF_energy='abc' is not a number"]),
    "import: forces of one column": (_import(n=1), lambda f: ["dataset", "build", str(f)],
                                     ["frames.extxyz: frame 0: REF_forces has shape (2,), expected (2, 3)"]),
    "import: non-finite force": (_import(f0="nan 0 0"), lambda f: ["dataset", "build", str(f)],
                                 ["frames.extxyz: frame 0: non-finite labels"]),
    "import: no energy key": (_import(energy=""), lambda f: ["dataset", "build", str(f)],
                              ["frames.extxyz: frame 0: no label(s) REF_energy", "energy_key"]),
    "trajectory with a NaN position (observe)": (
        _h5md(_nan_frame), lambda f: ["observe", str(f), "--block-ps", "0.05", "--skip-ps", "0.01", "--block-stride-ps", "0.01", "--no-kinisi"],
        ["traj.h5md: frame 7 (t = 0.07 ps) has non-finite positions"]),
    "H5MD whose species and positions disagree (observe)": (
        _h5md(_short_species), lambda f: ["observe", str(f), "--block-ps", "0.05", "--skip-ps", "0.01", "--block-stride-ps", "0.01", "--no-kinisi"],
        ["traj.h5md: species have shape (4,), expected (6,)"]),
    "extxyz: a value that is no number in frame 2": (_bad_extxyz("value"), _ev,
                                                     ["frames.extxyz: frame 2 (line 11)", "zero"]),
    "extxyz: an atom count larger than the frame": (_bad_extxyz("count"), _ev, ["frames.extxyz: frame 1 (line 6)"]),
    "evaluate: no such file": (_nothing, _ev, ["missing-workspace: no such file"]),
    "evaluate: a folder, not a file": (_a_folder, _ev, ["afolder: is a directory"]),
    "evaluate: empty file": (_text("e.extxyz", ""), _ev, ["e.extxyz: file is empty"]),
    "evaluate: no such model": (lambda d: _import()(d).parent / "frames.extxyz", lambda f: ["evaluate", str(f), "-m", str(f.parent / "none.model")],
                                ["none.model"]),
    "evaluate: unknown energy unit": (_frames_file, lambda f: [*_ev(f), "--energy-unit", "Ry"], ["Ry"]),
    "protocol: unknown key": (_ci_protocol_edit("horizon_ps: 0.05", "horizon_ps: 0.05\nhorizon_fs: 50"), _md,
                              ["protocol.yaml:", "horizon_fs"]),
    "protocol: negative timestep": (_ci_protocol_edit("timestep_fs: 0.5", "timestep_fs: -0.5"), _md,
                                    ["protocol.yaml:", "timestep_fs"]),
    "protocol: unknown thermostat": (_ci_protocol_edit("thermostat: bussi", "thermostat: nose"), _md,
                                     ["protocol.yaml:", "thermostat"]),
    "protocol: invalid YAML": (_ci_protocol_edit("npt: {length_ps: 0.05,", "npt: {length_ps: [0.05,"), _md,
                               ["protocol.yaml:", "invalid YAML"]),
    "protocol: a list at the top": (_text("protocol.yaml", "- a\n- b\n"), _md, ["protocol.yaml:1", "mapping"]),
    "protocol: empty file": (_text("protocol.yaml", ""), _md, ["protocol.yaml", "empty"]),
    "md: no such protocol": (_nothing, lambda f: ["md", "--model", str(FOUNDATION), "--protocol", str(f / "p.yaml"),
                                                  "-e", "npt", "-w", str(f.parent / "ws")], ["p.yaml"]),
    "md: unknown ensemble": (_a_folder, lambda f: ["md", "--model", str(FOUNDATION), "--protocol",
                                                   str(ROOT / "protocols" / "ci.yaml"), "-e", "nve", "-w", str(f / "ws")],
                             ["nve"]),
    "box: unknown molecule": (_a_folder, lambda f: ["box", "-c", "EC=4,XYZ=8", "--density", "1.2", "-o",
                                                    str(f / "b.extxyz")], ["XYZ"]),
    "box: non-positive density": (_a_folder, lambda f: ["box", "-c", "EC=4", "--density", "0", "-o",
                                                        str(f / "b.extxyz")], ["density"]),
    "label: unknown reference": (_frames_file, lambda f: ["label", str(f), "-o", str(f.parent / "o.extxyz"), "-r",
                                                          "dft"], ["unknown reference 'dft'"]),
    "label: reference options not JSON": (
        _frames_file, lambda f: ["label", str(f), "-o", str(f.parent / "o.extxyz"), "-r", "ase:ase.calculators.emt.EMT",
                                 "--reference-options", "{cutoff: 3"], ["reference options", "JSON"]),
    "label: ase name without a class": (_frames_file, lambda f: ["label", str(f), "-o", str(f.parent / "o.extxyz"),
                                                                 "-r", "ase:EMT"], ["expected ase:package.module.Class"]),
    "label: module that does not exist": (_frames_file, lambda f: ["label", str(f), "-o", str(f.parent / "o.extxyz"),
                                                                   "-r", "ase:nopkg.calc.C"], ["cannot import module nopkg.calc"]),
    "sweep: unknown architecture": (_sweep_with(lambda t: t.replace("architectures: [mace, deepmd]",
                                                                    "architectures: [mace, nequip]")),
                                    lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")], ["sweep.yaml", "nequip"]),
    "sweep: committee of zero": (_sweep_with(lambda t: t.replace("committee: 2", "committee: 0")),
                                 lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")], ["sweep.yaml:", "committee"]),
    "sweep: seeds not matching the committee": (_sweep_with(lambda t: t.replace("committee: 2", "committee: 2\nseeds: [1]")),
                                                lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")],
                                                ["sweep.yaml", "seeds"]),
    "sweep: no such dataset": (_sweep_with(lambda t: t.replace("ec-emc-xtb.yaml", "nope.yaml")),
                               lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")],
                               ["sweep.yaml", "dataset", "nope.yaml not found"]),
    "sweep: models entry with two kinds": (
        _sweep_with(lambda t: t + "models:\n  - {name: x, foundation: sevennet-0, calculator: 'ase:a.B'}\n"),
        lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")], ["sweep.yaml", "exactly one of"]),
    "sweep: unknown foundation model": (
        _sweep_with(lambda t: t + "models:\n  - {name: x, foundation: mace-mp-9}\n"),
        lambda f: ["sweep", "run", str(f), "-w", str(f.parent / "ws")], ["mace-mp-9"]),
    "sweep status of a missing workspace": (_nothing, lambda f: ["sweep", "status", "-w", str(f)], ["missing-workspace"]),
    "report of a missing workspace": (_nothing, lambda f: ["report", "-w", str(f), "-o", str(f.parent / "r")],
                                      ["missing-workspace: no harness.sqlite"]),
    "dataset build: unknown source": (_import(), lambda f: ["dataset", "build", str(f), "--only", "nope"],
                                      ["unknown source(s) nope"]),
    "AL: unknown architecture": (_al_edit("architecture: deepmd", "architecture: schnet"), _al, ["al.yaml", "schnet"]),
    "AL: committee of one (no variance)": (_al_edit("committee: 2", "committee: 1"), _al, ["al.yaml:", "committee"]),
    "AL: no such validation protocol": (_al_edit("protocol: ", "protocol: nope-"), _al, ["al.yaml", "validation.protocol"]),
    "AL: unknown key": (_al_edit("generations: 2", "generations: 2\ngenerashuns: 3"), _al, ["al.yaml:", "generashuns"]),
    "AL status of a missing workspace": (_nothing, lambda f: ["al", "status", "-w", str(f)], ["missing-workspace"]),
    "finetune: foundation not found": (_ft("  foundation: none.model\n  strategies: [{strategy: naive}]\n"), _run,
                                       ["sweep.yaml", "finetune.foundation", "none.model not found"]),
    "finetune: pinned hash differs": (_ft(f"  foundation: {FOUNDATION}\n  sha256: {'b' * 64}\n"
                                          "  strategies: [{strategy: naive}]\n"), _run, ["sweep.yaml", "pinned"]),
    "finetune: replay without a replay set": (_ft(f"  foundation: {FOUNDATION}\n  strategies: [{{strategy: replay}}]\n"),
                                              _run, ["sweep.yaml", "needs a replay section"]),
    "finetune: freeze on a naive strategy": (
        _ft(f"  foundation: {FOUNDATION}\n  strategies: [{{strategy: naive, freeze: 3}}]\n"), _run,
        ["sweep.yaml", "freeze is for strategy frozen"]),
    "finetune: freeze as many blocks as the foundation has": (
        _ft(f"  foundation: {FOUNDATION}\n  strategies: [{{strategy: frozen, freeze: 7}}]\n"), _run,
        ["sweep.yaml:", "finetune.strategies[0].freeze", "has 7 blocks"]),
    "finetune: unknown subset": (_ft(f"  foundation: {FOUNDATION}\n  subsets: [XX]\n  strategies: [{{strategy: naive}}]\n"),
                                 _run, ["sweep.yaml:", "finetune.subsets", "'XX'"]),
    "finetune: a non-MACE foundation file": (
        _ft(f"  foundation: {ROOT / 'datasets' / 'ec-emc-xtb.yaml'}\n  strategies: [{{strategy: naive}}]\n"), _run,
        ["sweep.yaml", "not a MACE .model file"]),
    "diagnostics: unknown validation set": (_diag("  volume_scans: [VS-9:9]\n"), _run, ["VS-9:9"]),
    "diagnostics: unknown committee": (_diag("  committees: [mace/Full]\n  volume_scans: [VS-1:2]\n"), _run,
                                       ["diagnostics.committees", "mace/Full"]),
    "diagnostics: a liquid of an unknown molecule": (_diag("  liquids:\n    odd: {composition: XX=4}\n"), _run, ["XX"]),
    "diagnostics: a ratio without n_molecules": (_diag("  liquids:\n    odd: {ratio: 'EC:DEC=1:1'}\n"), _run,
                                                 ["sweep.yaml:", "n_molecules"]),
    "dataset: subset of an unknown source": (_dataset(_LIQ, "  All: [liquid, nope]\n"), lambda f: ["dataset", "build", str(f)],
                                             ["ds.yaml:", "nope"]),
    "dataset: training on a validation source": (
        _dataset(_LIQ, "  All: [liquid]\n", "  held: [liquid]\n"), lambda f: ["dataset", "build", str(f)],
        ["ds.yaml:", "trains on validation source(s) liquid"]),
    "dataset: unknown source kind": (_dataset("  x: {kind: dft_md}\n", "  All: [x]\n"),
                                     lambda f: ["dataset", "build", str(f)], ["ds.yaml:", "kind"]),
    "dataset: negative frame count": (_dataset(_LIQ.replace("n_frames: 1", "n_frames: -1"), "  All: [liquid]\n"),
                                      lambda f: ["dataset", "build", str(f)], ["ds.yaml:", "n_frames"]),
    "train: unknown preset": (_a_folder, _train("--preset", "huge"), ["unknown preset 'huge' for mace"]),
    "train: unknown architecture": (_a_folder, lambda f: ["train", "-d", str(ROOT / "datasets" / "ec-emc-xtb.yaml"),
                                                          "-s", "OPLS", "-a", "schnet", "-w", str(f / "ws")], ["schnet"]),
    "train: unknown subset": (_a_folder, lambda f: ["train", "-d", str(ROOT / "datasets" / "ec-emc-xtb.yaml"), "-s",
                                                    "OPLS+XX", "-a", "mace", "-w", str(f / "ws")], ["OPLS+XX"]),
    "train: options not JSON": (_a_folder, _train("--options", "{max_num_epochs: 2"), ["options"]),
    "train: unknown dtype": (_a_folder, _train("--dtype", "float16"), ["float16"]),
    "report of a workspace with no scores (no output folder made)": (
        _empty_store, lambda f: ["report", "-w", str(f), "-o", str(f.parent / "report")], ["no scored committees"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_clear_error(case, runner, tmp_path):
    make, argv, needles = CASES[case]
    made = make(tmp_path)
    before = set(tmp_path.rglob("*"))
    result = runner.invoke(app, argv(made))
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, f"{case}: exit {result.exit_code}\n{text}"
    assert "Traceback" not in text, text
    for n in needles:
        assert n in text, f"{case}: {n!r} not in {text!r}"
    assert set(tmp_path.rglob("*")) == before, f"{case}: left files behind"
