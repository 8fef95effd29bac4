"""Expand an AL spec into one task graph over all generations (executed and resumed like a sweep).

Per chain (initial subset) and generation ``g``: ``train`` × committee (on the subset + the AL frames of
the previous generation's ``al_set`` task) → ``explore`` × (compositions × starts), each on the primary
member with the committee evaluated at the checks → ``label`` per run (oracle) → ``al_set`` (the
cumulative AL frames) → generation ``g + 1``. The starts
(``al_start``, OPLS-AA) are shared by all generations and chains. With ``validation``, every generation's
committee and the reference committee get the sweep's MD/observe/score tasks (Q per generation).
Keys are content hashes of parameters and dependency keys, so a rerun reuses every finished task.
"""

from __future__ import annotations

from pathlib import Path

from harness.al.spec import ALSpec
from harness.sweep.execute import Task

__all__ = ["plan_al", "committee_id", "FORMAT"]

_A = "harness.al.tasks:"
FORMAT = {"al_start": 1, "explore": 1, "label": 1, "al_set": 1}


def committee_id(arch: str, chain: str, generation: int) -> str:
    return f"{arch}/{chain}@g{generation}"


def _oracle(spec: ALSpec, dataset: Path) -> dict:
    if spec.oracle is not None:
        return spec.oracle.model_dump(mode="json")
    from harness.datasets.spec import load_dataset_spec

    ds = load_dataset_spec(dataset)
    options = dict(ds.reference.options)
    if ds.reference.name == "xtb":
        options["threads"] = spec.threads_per_task
    return {"name": ds.reference.name, "options": options}


def plan_al(spec: ALSpec, files: dict[str, Path], workspace: str | Path) -> list[Task]:
    from harness.config import load_yaml
    from harness.models.train import plan_committee
    from harness.observables.analysis import AnalysisSpec
    from harness.sweep.plan import plan_validation, train_tasks

    workspace = str(Path(workspace).resolve())
    common = {"workspace": workspace, "threads": spec.threads_per_task, "device": spec.device}
    e = spec.exploration
    explore_params = e.model_dump(mode="json", exclude={"compositions", "starts_per_composition", "start_density_g_cm3",
                                                        "start_equilibration_ps", "start_stride_ps",
                                                        "classical_cutoff_nm"})
    oracle = _oracle(spec, files["dataset"])
    tasks: list[Task] = []
    starts: dict[str, Task] = {}
    for ci, comp in enumerate(e.compositions):
        params = {"composition": comp, "n": e.starts_per_composition, "density_g_cm3": e.start_density_g_cm3,
                  "temperature_K": e.temperature_K, "equilibration_ps": e.start_equilibration_ps,
                  "stride_ps": e.start_stride_ps, "cutoff_nm": e.classical_cutoff_nm, "seed": 1000 * e.seed + ci,
                  "format": FORMAT["al_start"]}
        from harness.datasets.spec import params_hash

        params["path"] = str(Path(workspace) / "al" / "starts" / f"{comp.replace('=', '').replace(',', '-')}-"
                                                                 f"{params_hash(params)}.extxyz")
        starts[comp] = Task("al_start", _A + "al_start", params, (), f"OPLS-AA starts {comp}")
        tasks.append(starts[comp])

    members: dict[str, list[Task]] = {}
    committees: dict[str, dict] = {}
    for chain in spec.initial_subsets:
        prev_label: Task | None = None
        prev_members: list[Task] = []
        for g in range(spec.generations):
            cid = committee_id(spec.architecture, chain, g)
            tags = {"campaign": spec.name, "chain": chain, "generation": g}
            c = {"id": cid, "arch": spec.architecture, "subset": chain, "preset": spec.preset,
                 "overrides": spec.overrides, "max_train_frames": spec.max_train_frames, "reference": False,
                 "tags": tags}
            if g:
                c["name"] = f"{chain}+AL.{spec.name}.g{g}" + (".warm" if spec.warm_start else "")
            key = None
            if prev_label is None:  # generation 0: the data is known now, so its key is checked
                key = plan_committee(files["dataset"], chain, spec.architecture, preset=spec.preset,
                                     workspace=workspace, overrides=spec.overrides, device=spec.device,
                                     max_train_frames=spec.max_train_frames).key
            deps = (prev_label.key,) if prev_label else ()
            tr = train_tasks(c, dataset=files["dataset"], seeds=spec.member_seeds, common=common, deps=deps,
                             committee_key=key)
            if spec.warm_start and prev_members:
                tr = [Task(t.kind, t.fn, {**t.params, "warm_start": True}, (*t.deps, prev.key), t.label)
                      for t, prev in zip(tr, prev_members)]
            tasks += tr
            members[cid], committees[cid] = tr, c
            prev_members = tr
            if g == spec.generations - 1 and not spec.explore_last:
                break
            explores = []
            for ci, comp in enumerate(e.compositions):
                for k in range(e.starts_per_composition):
                    params = {**common, "exploration": explore_params, "composition": comp, "start": k,
                              "index": ci * e.starts_per_composition + k, "generation": g, "chain": chain,
                              "campaign": spec.name, "arch": spec.architecture, "format": FORMAT["explore"]}
                    explores.append(Task("explore", _A + "explore", params, (*[t.key for t in tr], starts[comp].key),
                                         f"explore {cid} {comp} start {k}"))
            tasks += explores
            labels = [Task("label", _A + "label", {**common, "oracle": oracle, "campaign": spec.name,
                                                   "format": FORMAT["label"]}, (x.key,),
                           x.label.replace("explore ", "label ", 1)) for x in explores]
            tasks += labels
            directory = Path(workspace) / "al" / spec.name / chain.replace("/", "_") / f"g{g}"
            lab = Task("al_set", _A + "al_set", {"campaign": spec.name, "chain": chain, "generation": g,
                                                 "directory": str(directory), "format": FORMAT["al_set"]},
                       (*[x.key for x in labels], *((prev_label.key,) if prev_label else ())),
                       f"AL set after {cid} ({len(explores)} runs)")
            tasks.append(lab)
            prev_label = lab

    if spec.validation is not None:
        v = spec.validation
        r = v.reference
        ref = {"id": f"ref:{r.arch}/{r.subset}", "arch": r.arch, "subset": r.subset, "preset": r.preset or spec.preset,
               "overrides": r.overrides or {}, "max_train_frames": r.max_train_frames, "reference": True}
        plan = plan_committee(files["dataset"], r.subset, r.arch, preset=ref["preset"], workspace=workspace,
                              overrides=ref["overrides"], device=spec.device, max_train_frames=r.max_train_frames)
        members[ref["id"]] = train_tasks(ref, dataset=files["dataset"], seeds=spec.member_seeds, common=common,
                                         committee_key=plan.key)
        committees[ref["id"]] = ref
        tasks += members[ref["id"]]
        analysis = load_yaml(files["analysis"], AnalysisSpec) if "analysis" in files else None
        tasks += plan_validation(members, committees, ref["id"], protocol=files["protocol"], analysis=analysis,
                                 replicas=v.replicas, common=common)
    return tasks
