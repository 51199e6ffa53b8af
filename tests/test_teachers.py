from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from _tinymodels import enc, tiny

from kdbench import teachers, trainer
from kdbench.api import (
    DomainData,
    Example,
    FitContext,
    FitResult,
    Method,
    Teacher,
    TeacherContext,
    TeacherRequest,
)
from kdbench.config import resolve_profile
from kdbench.device import Runtime


def ctx(tmp: Path, reuse=True) -> FitContext:
    return FitContext(task=None, target="d", domains={}, seed=0, profile=resolve_profile("tiny"),  # type: ignore[arg-type]
                      runtime=Runtime(torch.device("cpu"), "fp32", compile=False),
                      get_teacher=None, build_student=None,  # type: ignore[arg-type]
                      tokenize=None, workdir=tmp, reuse=reuse)  # type: ignore[arg-type]


def test_teacher_logits_cache_is_content_addressed(tmp_path, monkeypatch):
    calls = []
    real = teachers.predict
    monkeypatch.setattr(teachers, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    h = teachers.TeacherHandle(tiny(), key="teacherA")
    e = enc()
    first = teachers.teacher_logits(ctx(tmp_path), h, e)
    again = teachers.teacher_logits(ctx(tmp_path), h, e)
    assert len(calls) == 1 and torch.equal(first, again)  # computed once, then memory-mapped
    assert torch.allclose(first, real(h.model, e, "main", torch.device("cpu"), "fp32", 8))
    files = list((tmp_path / "cache" / "teacher-logits").glob("*.npy"))
    assert len(files) == 1 and not list(files[0].parent.glob("*.tmp"))

    # another teacher (key), or another tokenization of the data, never reuses those logits
    other = teachers.TeacherHandle(tiny(seed=1), key="teacherB")
    assert not torch.equal(teachers.teacher_logits(ctx(tmp_path), other, e), first)
    teachers.teacher_logits(ctx(tmp_path), h, enc(shift=3))
    assert len(calls) == 3 and len(list(files[0].parent.glob("*.npy"))) == 3

    # a corrupt cache file is recomputed, and reuse=False bypasses the cache
    for f in files[0].parent.glob("*.npy"):
        f.write_bytes(b"junk")
    assert torch.equal(teachers.teacher_logits(ctx(tmp_path), h, e), first)
    teachers.teacher_logits(ctx(tmp_path, reuse=False), h, e)
    assert len(calls) == 5


def test_cached_teacher_serves_the_recomputed_layer_outputs_and_respects_the_budget():
    from kdbench.data import batches

    teacher = teachers.TeacherHandle(tiny(1))
    data = enc(n=30)
    cpu = torch.device("cpu")
    cached = teachers.CachedTeacher(teacher, data, runtime=Runtime(cpu, "fp32", compile=False), batch_size=7, budget_mb=64)
    assert cached.enabled and cached.bytes == teachers.layer_outputs_bytes(teacher.model, data)
    calls = []
    real_forward = teacher.model.forward
    teacher.model.forward = lambda *a, **k: calls.append(1) or real_forward(*a, **k)
    for _ in range(2):  # two "epochs" of differently composed, differently padded batches
        for batch in batches(data, 5, __import__("random").Random(3)):
            got = cached(batch, output_hidden=True)
            want = real_forward(**{k: batch[k] for k in trainer.INPUTS}, output_hidden=True, output_scores=True)
            mask = batch["attention_mask"].bool()
            assert torch.allclose(got.logits, want.logits, atol=1e-5)
            for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
                assert g.shape == w.shape and torch.allclose(g[mask], w[mask], atol=1e-5)
            pair = mask[:, None, :, None] & mask[:, None, None, :]
            for g, w in zip(got.attention_scores, want.attention_scores, strict=True):
                assert g.shape == w.shape
                assert torch.allclose(g.masked_fill(~pair, 0), w.masked_fill(~pair, 0), atol=1e-5)
    assert len(calls) == 5  # one pass over the 30 examples in batches of 7, then never again
    calls.clear()
    cached(next(batches(data, 5)), output_hidden=False)  # logits only: not served from the layer cache
    assert len(calls) == 1

    tight = teachers.CachedTeacher(teacher, data, runtime=Runtime(cpu, "fp32", compile=False), batch_size=7,
                                  budget_mb=cached.bytes / 2**20 / 2)
    assert not tight.enabled  # over budget: every call runs the teacher
    calls.clear()
    tight(next(batches(data, 5)), output_hidden=True)
    assert len(calls) == 1 and tight._rows is None


# ------------------------------------------------------------------------------------ the store
class _Kind(Teacher):
    name = "fake"
    description = "a tiny model trained by nothing (for the store's tests)"

    def fit(self, ctx: TeacherContext) -> FitResult:
        return FitResult(model=tiny(ctx.seed), info={"best_dev": 50.0})

    def build(self, ctx: TeacherContext):
        return tiny()


def _store(root: Path, messages: list[str] | None = None) -> teachers.TeacherStore:
    reg = SimpleNamespace(teachers=SimpleNamespace(get=lambda name: _Kind))
    return teachers.TeacherStore(root, reg, resolve_profile("tiny"),  # type: ignore[arg-type]
                                 runtime=Runtime(torch.device("cpu"), "fp32", compile=False), reuse=True,
                                 teacher_domains="all", progress=lambda **kw: None,
                                 message=(messages if messages is not None else []).append)


DOMAINS = {f"d{i}": DomainData(f"d{i}", (Example(f"d{i}-0", "x", 0),), (), ()) for i in range(6)}
TASK = SimpleNamespace(name="fake-task", version="1")


def _spec(store: teachers.TeacherStore, domain: str, seed: int = 0) -> teachers.TeacherSpec:
    return store.spec(TeacherRequest("fake", domain), TASK, lambda ex: None, 60, DOMAINS, seed)  # type: ignore[arg-type]


def test_store_keeps_every_teacher_the_open_cell_uses_and_records_the_cell(tmp_path):
    store = _store(tmp_path)
    assert len(DOMAINS) > teachers.LRU_SIZE
    with store.cell() as usage:
        handles = [store.get(_spec(store, d)) for d in DOMAINS]
        # multiteacher-like: all six are still loaded, none evicted although the LRU keeps four
        assert all(store.handle(h.key) is not None and store.handle(h.key).model is h.model for h in handles)
    assert usage.trained == len(DOMAINS) and list(usage.used) == [h.key for h in handles]
    assert [u["domains"] for u in usage.records] == [[d] for d in DOMAINS]
    assert usage.acquire_seconds >= usage.trained_seconds
    assert len(store.loaded) == teachers.LRU_SIZE  # the cell closed: back to the LRU's size
    assert list(store.loaded) == [h.key for h in handles[-teachers.LRU_SIZE:]]  # the oldest went first

    # a second store (another process) loads them from disk: nothing trained, same weights
    again = _store(tmp_path)
    with again.cell() as usage2:
        h0 = again.get(_spec(again, "d0"))
    assert usage2.trained == 0 and usage2.used.keys() == {handles[0].key}
    assert all(torch.equal(a, b) for a, b in zip(h0.model.state_dict().values(),
                                                  handles[0].model.state_dict().values(), strict=True))


def test_store_keys_depend_on_seed_and_domain_and_retrain_a_tampered_checkpoint(tmp_path):
    store = _store(tmp_path)
    assert _spec(store, "d0").key == _spec(store, "d0").key
    assert len({_spec(store, "d0").key, _spec(store, "d1").key, _spec(store, "d0", seed=1).key}) == 3
    with store.cell():
        key = store.get(_spec(store, "d0")).key
    (tmp_path / key / "model.safetensors").write_bytes(b"tampered")
    messages: list[str] = []
    other = _store(tmp_path, messages)
    with other.cell() as usage:
        other.get(_spec(other, "d0"))
    assert usage.trained == 1 and any("does not match its recorded sha256" in m for m in messages)


def test_default_distill_serves_layer_outputs_from_the_cache(tmp_path):
    """--teacher-cache-mb applies to the default fit of a method that reads hidden states."""
    model = tiny(1)
    calls = []
    real_forward = model.forward
    model.forward = lambda *a, **k: calls.append(k.get("output_hidden")) or real_forward(*a, **k)
    data = enc(n=30)

    class Layers(Method):
        name, description, teacher, needs_hidden = "layers", "reads hidden states", "single", True

        def loss(self, batch, student, teacher):
            assert teacher is not None and teacher.hidden_states is not None
            return (student.hidden_states[-1].float().mean() - teacher.hidden_states[-1].float().mean()) ** 2

    profile = resolve_profile("tiny")
    c = FitContext(task=None, target="d", domains={"d": DomainData("d", (), (), ())}, seed=0,  # type: ignore[arg-type]
                   profile=profile, runtime=Runtime(torch.device("cpu"), "fp32", compile=False),
                   get_teacher=lambda request: teachers.TeacherHandle(model), build_student=lambda: tiny(2),
                   tokenize=lambda ex: data, workdir=tmp_path)
    trainer.distill(c, Layers())
    passes = -(-len(data) // profile.eval_batch_size)
    steps = -(-len(data) // profile.batch_size) * profile.student_train.epochs
    assert steps > passes and calls == [True] * passes  # one pass over the data, not one per step
