"""``metakd``: Meta-KD (Pan et al., ACL 2021), as the paper's official code implements it.

Registers the teacher kind ``meta`` (its options are the meta-teacher ablations; the registry
derives its row ``teacher:meta``) and the method ``metakd``. Sources: the paper; alibaba/EasyTransfer ``scripts/metaKD/`` at 05d2b48
(``meta_teacher.py``, ``meta_distill.py``, ``transformer/modeling.py``, the official code); alibaba/EasyNLP
``easynlp/distillation/distill_metakd_application.py`` and ``examples/knowledge_distillation/metakd/``.
Where kdbench's default differs from them, an option restores the official behaviour and the
``paper`` profile sets it: see the README's "Fidelity to the official code" table.

1. **Prototype scores** (:func:`prototype_table`). Every train example of every domain is embedded
   with the frozen PRETRAINED teacher encoder (a freshly loaded teacher, not the fine-tuned one):
   h_i = mean of the last layer over the tokens after [CLS], padding masked out
   (``prototype_include_padding=True`` reproduces the original code, which pads every text to
   ``max_len`` and averages the padding states in). One centroid per domain;
   ``t_i = ½·cos(h_i, c_own) + ½·cos(h_i, mean of the other centroids)``. The table is a pure
   function of (teacher model, data, seed), computed in one place for the meta-teacher and for
   distillation, memoised in-process, and drawn under a forked RNG so that whether it was memoised
   never changes the random state of training.
2. **Meta-teacher** (:class:`MetaTeacherModel`, kind ``meta``): trained on the pooled train data of
   every domain. Label head ``classifier(relu(pooled))``; domain branch
   ``g(x) = tanh(W·(E_D[domain] + meanpool(H_last[:, 1:])))`` → dropout → domain classifier.
   Loss ``mean_i t_i·(CE_i + γ1·CE(domain_logits_i, π(domain)_i))`` with π a random permutation of
   the batch's domain ids ("domain corruption"), γ1 = 0.5. Best epoch on the pooled dev data of
   every domain.
3. **Meta-distillation stage 1** (per target domain, target train split): per example
   ``λ_i·(Σ hidden MSE (embeddings included, shared projection W_h) + Σ attention-score MSE
   + γ2·MSE(W_h·g_S(x), g_T(x)))`` with γ2 = 0.5, TinyBERT's layer map, and
   ``λ_i = (1 + t_i) / (exp((1 − p_T(y_i|x_i))²) + 1)``, weighted per example BEFORE the batch mean
   (the EasyNLP re-implementation averages first, losing the per-example weighting).
4. **Stage 2**: prediction-layer soft cross-entropy from the meta-teacher (T = 1, as the original);
   the best dev epoch is kept.

The student's domain branch g_S. The official code gives the student the same domain-branch
structure as the teacher (``MetaStudentForSequenceClassification``: its own domain embedding and
dense layer, at the student's width) and compares ``fit_dense(g_S)`` with the teacher's branch.
Here the student gets a :class:`DomainBranch` of its own width (embedding of every domain + W_S,
BERT-initialised), trained in stage 1 together with the student and W_h, and discarded afterwards:
the deployed student is the same plain :class:`~kdbench.modeling.KDModel` every other method produces,
so parameter counts and inference cost stay comparable.

The transferable-knowledge term (option ``tkd_form``):

* ``"paper"`` (default): the paper's formula, ``MSE(W_h·g_S(x), g_T(x))`` with g as defined above,
  tanh included on both sides, weighted per example by λ_i like the other terms.
* ``"official"``: what both official codes compute. They compare the branch outputs BEFORE the tanh
  on BOTH sides: EasyTransfer ``meta_distill.py`` loads the meta-teacher as a
  ``MetaStudentForSequenceClassification``, whose ``forward`` returns
  ``corrupt_dense(domain_embedding + mean(H_last[:, 1:]))`` without tanh, and the student's
  ``fit_dense`` of the same; EasyNLP ``distill_metakd_application.py`` does the same and also passes
  the TEACHER's output through the teacher model's own, freshly initialised ``fit_dense`` (kdbench
  does not reproduce that random map). Both reduce the term to a batch scalar before weighting, so
  it is weighted by the batch mean of λ (:func:`kdbench.losses.meta_distill_stage1_loss`,
  ``tkd_batch_mean``). Their mean over ``H_last[:, 1:]`` includes the padding of the 128-token input:
  with ``mse_normalisation="padded"`` (the batch padded to ``max_len``) kdbench averages the padding
  in too.

Magnitude: issue #15 reports that at the start of stage 1 on the ``cpu`` profile the term was about
0.005 against an attention term of ~25 and a hidden term of ~0.9 (a freshly initialised student
branch outputs values near 0, so the term starts at about ``mean(g_T²)``). It is small,
not off: its gradient reaches the student encoder through the branch's mean pooling
(``tests/methods/test_metakd.py`` checks that). Whether the official pre-tanh features give a
larger term was not measured here; ``tkd_form="official"`` is the setting to measure it with.

Ablations (method options, ``--set metakd.KEY=VALUE``):

* ``use_prototype_weights=false``: "w/o prototype" — every t_i = 1, i.e. equal weights in the
  meta-teacher loss (plain mean CE) and ``λ_i = 2 / (exp((1 − p)²) + 1)`` in stage 1.
* ``use_domain_corruption=false``: the γ1 term is dropped from the meta-teacher loss.
* ``use_expertise_weights=false``: λ_i = 1 in stage 1.
* ``gamma2=0``: no transferable-knowledge term.

Options that change the meta-teacher (the first two and ``prototype_include_padding``) are the
options of the teacher kind ``meta`` (:class:`MetaTeacherConfig`): ``metakd`` asks for the
meta-teacher with them (:meth:`MetaKDConfig.teacher_options`), and the runner's teacher store keys a
teacher by its kind and options, so it never hands an ablation the full meta-teacher or vice versa.
The evaluation row takes the same options: ``teacher:meta[use_domain_corruption=false]``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kdbench import hookimpl
from kdbench.api import FitContext, FitResult, Method, Teacher, TeacherConfig, TeacherContext, TeacherRequest
from kdbench.data import batches
from kdbench.device import to_device
from kdbench.distill import (
    LayerDistiller,
    TinyBERTConfig,
    combine,
    distiller_for,
    pad_to,
    pooled,
    run_stage1,
    run_stage2,
    stage1_batch,
)
from kdbench.losses import (
    cross_entropy_per_example,
    domain_corruption_loss,
    expertise_weights,
    masked_mean_pool,
    meta_distill_stage1_loss,
    meta_teacher_loss,
    prototype_scores,
)
from kdbench.modeling import KDModel, load_model, parse_tiny
from kdbench.results import config_hash
from kdbench.teachers import cached_teacher
from kdbench.trainer import INPUTS, forward, train_teacher

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from kdbench.api import DomainData, Example, Task
    from kdbench.config import Profile
    from kdbench.data import Encoded
    from kdbench.teachers import TeacherHandle

GAMMA1 = 0.5  # weight of the domain-corruption term in the meta-teacher loss (paper, official code)


# ------------------------------------------------------------------------------------------ models
def _bert_init(module: nn.Module, std: float) -> None:
    """BERT's initialiser (normal(0, initializer_range), zero bias), as for the classification heads."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


class DomainBranch(nn.Module):
    """Meta-KD's domain feature ``g(x) = tanh(W·(E_D[d] + meanpool(H_last[:, 1:])))``, shape ``(B, H)``.

    The mean runs over the real tokens after [CLS] (kdbench pads dynamically; the original pads to a
    fixed length and averages the padding in: ``include_padding=True``). ``activation=False`` returns
    the value before the tanh (what the official distillation compares).
    """

    def __init__(self, hidden: int, n_domains: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_domains, hidden)
        self.dense = nn.Linear(hidden, hidden)
        _bert_init(self, init_std)

    def forward(self, last_hidden: torch.Tensor, attention_mask: torch.Tensor, domain_ids: torch.Tensor,
                *, activation: bool = True, include_padding: bool = False) -> torch.Tensor:
        """``domain_ids`` −1 (a domain the branch was not trained on): the mean domain embedding.
        ``activation=False`` returns the features before tanh (the official codes' comparison)."""
        content = masked_mean_pool(last_hidden, attention_mask, skip_cls=True, include_padding=include_padding)
        emb = self.embedding(domain_ids.clamp(min=0))
        unknown = domain_ids < 0
        if bool(unknown.any()):
            emb = torch.where(unknown[:, None], self.embedding.weight.mean(dim=0).expand_as(emb), emb)
        pre = self.dense(emb + content)
        return torch.tanh(pre) if activation else pre


class MetaTeacherModel(KDModel):
    """The meta-teacher: the label head reads ``relu(pooled)``; a domain branch sits beside it."""

    def __init__(self, seqcls: nn.Module, heads: Sequence[str] = ("main",), n_domains: int = 2) -> None:
        super().__init__(seqcls, heads)
        std = float(getattr(self.config, "initializer_range", 0.02))
        self.n_domains = n_domains
        self.domain_branch = DomainBranch(self.hidden_size, n_domains, std)
        self.domain_dropout = nn.Dropout(self.config.hidden_dropout_prob)
        self.domain_classifier = nn.Linear(self.hidden_size, n_domains)
        _bert_init(self.domain_classifier, std)

    def head_input(self, pooled: torch.Tensor) -> torch.Tensor:
        # reference: logits = classifier(relu(pooled_output)), no dropout before the classifier
        return torch.relu(pooled)

    def domain_features(self, last_hidden: torch.Tensor, attention_mask: torch.Tensor,
                        domain_ids: torch.Tensor, **kw: bool) -> torch.Tensor:
        """g_T(x), ``(B, H)`` (``kw``: see :meth:`DomainBranch.forward`)."""
        return self.domain_branch(last_hidden, attention_mask, domain_ids, **kw)

    def domain_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.domain_classifier(self.domain_dropout(features))


# ------------------------------------------------------------------------------ prototype scores

_PROTOTYPES: OrderedDict[str, dict[tuple[str, str], float]] = OrderedDict()
_PROTOTYPES_KEEP = 4


def prototype_table(*, task: Task, domains: Mapping[str, DomainData], profile: Profile, device: torch.device,
                    tokenize: Callable[[tuple[Example, ...]], Encoded], vocab_size: int | None, seed: int,
                    include_padding: bool = False) -> dict[tuple[str, str], float]:
    """Prototype score t_i of every train example of every domain, keyed by ``(domain, example id)``.

    Embeddings come from the frozen pretrained teacher (``profile.teacher`` loaded afresh; a ``tiny:``
    teacher is random-initialised from ``seed``), in fp32 and eval mode; centroids are taken over the
    train examples of all ``domains`` as given (the cell's fraction applied).
    """
    tiny = parse_tiny(profile.teacher) is not None
    key = config_hash({"teacher": profile.teacher, "max_len": profile.max_len, "pad": include_padding,
                       "task": task.name, "task_version": task.version,
                       "tiny": [seed, vocab_size] if tiny else None,
                       "data": {d: [e.id for e in dd.train] for d, dd in domains.items()}})
    if key in _PROTOTYPES:
        _PROTOTYPES.move_to_end(key)
        return _PROTOTYPES[key]
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    keys: list[tuple[str, str]] = []
    embeddings: list[torch.Tensor] = []
    domain_ids: list[int] = []
    with torch.random.fork_rng(devices=cuda):  # loading must not move the training RNG streams
        torch.manual_seed(seed)
        encoder = load_model(profile.teacher, task.num_labels, profile=profile, role="teacher",
                             vocab_size=vocab_size).to(device).eval()
        with torch.no_grad():
            for k, (name, dd) in enumerate(domains.items()):
                enc = tokenize(dd.train)
                rows = torch.empty(len(enc), encoder.hidden_size)
                for batch in batches(enc, profile.eval_batch_size):
                    if include_padding:  # the original pads every text to max_seq_length
                        batch = pad_to(batch, profile.max_len)
                    b = to_device(batch, device)
                    last = encoder.backbone(**{x: b[x] for x in INPUTS}).last_hidden_state.float()
                    rows[batch["index"]] = masked_mean_pool(last, b["attention_mask"], skip_cls=True,
                                                            include_padding=include_padding).cpu()
                embeddings.append(rows)
                keys.extend((name, i) for i in enc.ids)
                domain_ids.extend([k] * len(enc))
        del encoder
    scores = prototype_scores(torch.cat(embeddings), torch.tensor(domain_ids)).tolist()
    table = dict(zip(keys, scores, strict=True))
    _PROTOTYPES[key] = table
    while len(_PROTOTYPES) > _PROTOTYPES_KEEP:
        _PROTOTYPES.popitem(last=False)
    return table


# --------------------------------------------------------------------------------- meta-teacher
@dataclass(frozen=True)
class MetaTeacherConfig(TeacherConfig):
    """The meta-teacher's options: the paper's (all defaults) or an ablation."""

    use_prototype_weights: bool = True  # False: every t_i = 1 (plain mean CE)
    use_domain_corruption: bool = True  # False: no γ1 term
    prototype_include_padding: bool = False  # True: the original code's prototypes (padding averaged in)


def meta_teacher_batch_loss(model: MetaTeacherModel, batch: Mapping[str, torch.Tensor], *, gamma1: float,
                            use_domain_corruption: bool, generator: torch.Generator | None = None,
                            ) -> torch.Tensor:
    """``mean_i t_i·(CE_i + γ1·CE(domain_logits_i, π(domain)_i))``; ``batch`` carries ``t`` and ``domain``."""
    out = model(**{k: batch[k] for k in INPUTS}, output_hidden=True)
    assert out.hidden_states is not None
    ce = cross_entropy_per_example(out.logits.float(), batch["labels"])
    if use_domain_corruption:
        feats = model.domain_features(out.hidden_states[-1], batch["attention_mask"], batch["domain"])
        dom, _ = domain_corruption_loss(model.domain_logits(feats).float(), batch["domain"], generator)
    else:
        dom = torch.zeros_like(ce)
    return meta_teacher_loss(ce, dom, batch["t"].float(), gamma1 if use_domain_corruption else 0.0)


class MetaTeacher(Teacher[MetaTeacherConfig]):
    name = "meta"
    description = "Meta-KD meta-teacher: all domains, prototype-weighted, domain corruption"
    Config = MetaTeacherConfig

    def key_options(self) -> dict[str, Any]:
        options = super().key_options()
        if not self.config.use_prototype_weights:  # without t_i, how prototypes are pooled is irrelevant
            options.pop("prototype_include_padding", None)
        return options

    def train_domains(self, target: str, all_domains: Sequence[str]) -> tuple[str, ...]:
        return tuple(all_domains)

    def build(self, ctx: TeacherContext) -> KDModel:
        return load_model(ctx.profile.teacher, ctx.task.num_labels, profile=ctx.profile, role="teacher",
                          vocab_size=ctx.vocab_size, model_cls=MetaTeacherModel,
                          n_domains=len(ctx.train_domains))

    def fit(self, ctx: TeacherContext) -> FitResult:
        examples = pooled(ctx, "train")
        domain_ids = [i for i, d in enumerate(ctx.train_domains) for _ in ctx.domains[d].train]
        cfg = self.config
        if cfg.use_prototype_weights:
            table = prototype_table(task=ctx.task, domains={d: ctx.domains[d] for d in ctx.train_domains},
                                    profile=ctx.profile, device=ctx.device, tokenize=ctx.tokenize,
                                    vocab_size=ctx.vocab_size, seed=ctx.seed,
                                    include_padding=cfg.prototype_include_padding)
            t = [table[(d, e.id)] for d in ctx.train_domains for e in ctx.domains[d].train]
        else:
            t = [1.0] * len(examples)
        train = ctx.tokenize(examples).with_extra(domain=domain_ids, t=t)
        model = self.build(ctx).to(ctx.device)
        assert isinstance(model, MetaTeacherModel)
        generator = torch.Generator().manual_seed(ctx.seed)  # the corruption permutations

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return meta_teacher_batch_loss(model, batch, gamma1=GAMMA1, generator=generator,
                                           use_domain_corruption=cfg.use_domain_corruption)

        result = train_teacher(ctx, model, loss_fn, train, ctx.tokenize(pooled(ctx, "dev")),
                               stage=f"teacher:{self.name}")
        result.info["prototype_mean"] = sum(t) / len(t)
        return result


# ------------------------------------------------------------------------------ meta-distillation
@dataclass(frozen=True)
class MetaKDConfig(TinyBERTConfig):
    """Stage settings as ``tinybert`` (official: 10 epochs at 5e-5, then 3 at 3e-5, T = 1)."""

    gamma2: float = 0.5  # weight of the transferable-knowledge (domain-branch) term
    tkd_form: str = "paper"  # "paper" (tanh, per-example λ) or "official" (before tanh, batch-mean λ)
    use_prototype_weights: bool = True
    use_domain_corruption: bool = True
    use_expertise_weights: bool = True
    prototype_include_padding: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma2 < 0:
            raise ValueError(f"gamma2={self.gamma2} must be >= 0")
        if self.tkd_form not in ("paper", "official"):
            raise ValueError(f"tkd_form={self.tkd_form!r}: expected 'paper' or 'official'")

    @property
    def teacher_options(self) -> dict[str, Any]:
        """The meta-teacher's options (those that differ from the paper's; see :class:`MetaTeacher`)."""
        teacher = MetaTeacher(MetaTeacherConfig(self.use_prototype_weights, self.use_domain_corruption,
                                                self.prototype_include_padding))
        return teacher.key_options()


def stage1_terms(student: KDModel, teacher: TeacherHandle, distiller: LayerDistiller, branch: DomainBranch,
                 batch: Mapping[str, torch.Tensor], *, use_prototype_weights: bool = True,
                 use_expertise_weights: bool = True, tkd_form: str = "paper") -> dict[str, torch.Tensor]:
    """Per-example ``(B,)`` stage-1 terms: ``hidden``, ``attention``, ``tkd`` and the weights ``lam``.

    ``batch`` carries the prototype scores ``t`` and the ``domain`` index of each example.
    ``tkd_form="official"`` compares the domain features before the tanh (see the module docstring);
    the branch's mean pooling includes padding when the distiller uses the padded normalisation.
    """
    mask = batch["attention_mask"]
    t_out = teacher(batch, output_hidden=True)
    s_out = forward(student, batch, output_hidden=True)
    assert t_out.hidden_states is not None and s_out.hidden_states is not None
    hid, att = distiller.terms(s_out, t_out, mask)
    meta = teacher.model
    assert isinstance(meta, MetaTeacherModel)
    kw = {"activation": tkd_form != "official", "include_padding": distiller.normalisation == "padded"}
    with torch.no_grad():  # the meta-teacher's own domain index ("teacher_domain") when it differs
        g_t = meta.domain_features(t_out.hidden_states[-1], mask,
                                   batch.get("teacher_domain", batch["domain"]), **kw).float()
    g_s = branch(s_out.hidden_states[-1], mask, batch["domain"], **kw)
    tkd = (distiller.project(g_s) - g_t).pow(2).mean(dim=-1)
    if use_expertise_weights:
        t = batch["t"].float() if use_prototype_weights else torch.ones_like(hid)
        p_true = t_out.logits.float().softmax(-1).gather(1, batch["labels"][:, None]).squeeze(1)
        lam = expertise_weights(t, p_true.detach())
    else:
        lam = torch.ones_like(hid)
    return {"hidden": hid, "attention": att, "tkd": tkd, "lam": lam}


class MetaKD(Method[MetaKDConfig]):
    """Meta-KD; options and their official values: see the module docstring and the README's
    `Fidelity to the official code <../README.md#fidelity-to-the-official-code>`_."""

    name = "metakd"
    description = "Meta-KD: meta-teacher on all domains, expertise-weighted meta-distillation (Pan et al. 2021)"
    teacher = "meta"
    needs_hidden = True
    Config = MetaKDConfig

    def teacher_requests(self, target: str, domains: Sequence[str]) -> list[TeacherRequest]:
        return [TeacherRequest("meta", target, self.config.teacher_options)]

    def fit(self, ctx: FitContext) -> FitResult:
        cfg = self.config
        teacher = ctx.teacher("meta", options=cfg.teacher_options)
        assert isinstance(teacher.model, MetaTeacherModel)
        order = tuple(ctx.domains)  # the meta-teacher's domain indices (its train_domains)
        student = ctx.build_student()
        distiller = distiller_for(student, teacher.model, cfg).to(ctx.device)
        branch = DomainBranch(student.hidden_size, len(order),
                              float(getattr(student.config, "initializer_range", 0.02))).to(ctx.device)

        examples = ctx.data.train
        if cfg.use_prototype_weights:
            table = prototype_table(task=ctx.task, domains=ctx.domains, profile=ctx.profile, device=ctx.device,
                                    tokenize=ctx.tokenize, vocab_size=int(student.config.vocab_size),
                                    seed=ctx.seed, include_padding=cfg.prototype_include_padding)
            t = [table[(ctx.target, e.id)] for e in examples]
        else:
            t = [1.0] * len(examples)
        train = ctx.tokenize(examples).with_extra(t=t, domain=[order.index(ctx.target)] * len(examples))
        # --teacher-domains others: the meta-teacher never saw the target and has no embedding for it;
        # its domain features for the target use the MEAN of its trained domains' embeddings.
        pool = list(ctx.teacher_pool or order)
        if ctx.target not in pool:
            train = train.with_extra(teacher_domain=[-1] * len(examples))
        elif pool != list(order):
            train = train.with_extra(teacher_domain=[pool.index(ctx.target)] * len(examples))

        # stage 1 reads the teacher's layers in every step: cached within --teacher-cache-mb, except for
        # the official padded normalisation, which needs the teacher's states at the padded positions too
        layers = teacher if cfg.mse_normalisation == "padded" else cached_teacher(ctx, teacher, train)

        def loss1(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            terms = stage1_terms(student, layers, distiller, branch, stage1_batch(ctx, batch, cfg),
                                 use_prototype_weights=cfg.use_prototype_weights,
                                 use_expertise_weights=cfg.use_expertise_weights, tkd_form=cfg.tkd_form)
            return meta_distill_stage1_loss(terms["hidden"], terms["attention"], terms["tkd"], terms["lam"],
                                            cfg.gamma2, tkd_batch_mean=cfg.tkd_form == "official")

        params = [*student.parameters(), *distiller.parameters(), *branch.parameters()]
        r1 = run_stage1(ctx, student, loss1, params, cfg, stage=self.name, train_data=train,
                        teacher_key=teacher.key and f"{teacher.key}/{teacher.head}")
        r2 = run_stage2(ctx, student, teacher, cfg, stage=self.name)
        info: dict[str, Any] = {"teacher_options": cfg.teacher_options, "projection": distiller.projection is not None,
                                "prototype_mean": sum(t) / max(1, len(t))}
        return combine(student, r1, r2, stage=self.name, **info)


@hookimpl
def kdbench_register_teachers() -> list[type[Teacher]]:
    return [MetaTeacher]


@hookimpl
def kdbench_register_methods() -> list[type[Method]]:
    return [MetaKD]
