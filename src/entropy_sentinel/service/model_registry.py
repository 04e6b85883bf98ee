"""`ModelRegistry`: the estimators of one service, keyed by model.

The *key* of a trace is the model it names (the record's ``model``: the model the
client asked for; see `entropy_sentinel.model_names`), mapped through the aliases to a
configured name; a trace that names none gets the default key (``default_model``, else
the only named model when exactly one is served, else ``""``). Its estimator is:

1. the estimator configured for that key (``--model NAME=PATH``, ``[models.NAME]``, or
   a bare PATH whose artifact records NAME);
2. else the *unnamed* estimator, if one is served (a bare PATH whose artifact records
   no model): it scores every model without an estimator of its own, one scorer per
   key, so each model's numbers stay apart; these are marked as scored by an estimator
   fitted on another model's traces (`ScorerInfo.other_model`), and the service warns
   at start;
3. else none: the trace is stored *waiting* (no P(correct), its per-step arrays kept)
   and counted, and the log says "no estimator for model X" (once per model and 10
   minutes). `rescore_pending` scores waiting traces once their model has an estimator.

`configure` (re)loads the model specs: the service calls it at start and again on
reload (SIGHUP), reusing estimators whose artifact did not change, so a model added to
the settings file is served, and its waiting traces scored, without a restart.

Thread-safe: the writer thread routes and scores, the maintenance task rescores and
reloads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.artifact import load_estimator, read_card
from entropy_sentinel.model_names import fitted_model
from entropy_sentinel.service.scoring import Scorer, file_sha256
from entropy_sentinel.service.settings import ModelSpec
from entropy_sentinel.service.storage.store import Storage

__all__ = ["ModelRegistry", "Served"]

log = logging.getLogger("entropy_sentinel.service.models")

_WARN_EVERY = 600.0  # seconds between "no estimator for model X" lines per model


@dataclass(frozen=True)
class Served:
    """A configured model: its key, aliases, and scorer (None for the unnamed estimator's
    template, which scores each key with a scorer of its own)."""

    name: str
    aliases: tuple[str, ...]
    scorer: Scorer


class ModelRegistry:
    """Estimators by model key (see the module docstring).

    Args:
        storage: the database.
        specs: the estimators to serve.
        default_model: the key of traces that name no model (see the module docstring).
    """

    def __init__(
        self, storage: Storage, specs: Sequence[ModelSpec], default_model: str | None = None
    ) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self._named: dict[str, Served] = {}
        self._aliases: dict[str, str] = {}
        self._unnamed: Scorer | None = None
        self._by_key: dict[str, Scorer] = {}  # the unnamed estimator's scorer per key
        self._default = ""
        self._warned: dict[str, float] = {}
        if not specs:
            raise ConfigError(
                "sentinel serve needs an estimator: --model PATH, or --model NAME=PATH per "
                "model (repeatable), or [models.NAME] tables in --config (docs/service.md)"
            )
        self.configure(specs, default_model)

    # ------------------------------------------------------------ configuration
    def configure(self, specs: Sequence[ModelSpec], default_model: str | None = None) -> None:
        """Serve ``specs`` from now on (loading what changed); see the module docstring.

        Everything is checked and loaded before anything is activated, so a bad spec
        (`ConfigError`, `ArtifactError`) leaves the running configuration as it was.
        """
        plan: list[tuple[str, ModelSpec, dict[str, Any]]] = []  # (name, spec, its card)
        unnamed_spec: ModelSpec | None = None
        for spec in specs:
            card = read_card(spec.path)  # fast: the model is not loaded
            fitted = fitted_model(card)
            name = spec.name if spec.name is not None else fitted
            if name is None:
                if unnamed_spec is not None:
                    raise ConfigError(
                        f"{str(unnamed_spec.path)!r} and {str(spec.path)!r} both record no "
                        "model name, and at most one estimator may serve every model: name "
                        "them (--model NAME=PATH, or refit with sentinel fit --model-name)"
                    )
                unnamed_spec = spec
            elif any(name == n for n, _, _ in plan):
                raise ConfigError(f"model {name!r} is given two estimators; give it one")
            else:
                plan.append((name, spec, card))
        aliases = self._check_aliases({n: s.aliases for n, s, _ in plan})
        default = self._default_key({n for n, _, _ in plan}, aliases, unnamed_spec, default_model)
        current = {(s.scorer.model, s.scorer.sha256): s.scorer for s in self._named.values()}
        named: dict[str, Served] = {}
        for name, spec, card in plan:
            sha = file_sha256(spec.path)
            fitted = fitted_model(card)
            scorer = current.get((name, sha)) or Scorer(
                load_estimator(spec.path),
                sha,
                self.storage,
                name,
                path=spec.path,
                card=card,
            )
            named[name] = Served(name, tuple(a for a in spec.aliases if a != name), scorer)
            if fitted is not None and fitted != name:
                log.warning(
                    "the estimator %s serves model %r but was fitted on the traces of %r: "
                    "its estimates are marked as scored by an estimator fitted on another "
                    "model's traces",
                    spec.path,
                    name,
                    fitted,
                    extra={"model": name, "fitted_on": fitted},
                )
        unnamed = None if unnamed_spec is None else self._reuse_unnamed(unnamed_spec.path)
        for served in named.values():
            served.scorer.activate()
        with self._lock:
            if unnamed is not self._unnamed:
                self._by_key = {}
            else:  # a model that got an estimator of its own leaves the unnamed one
                self._by_key = {k: v for k, v in self._by_key.items() if k not in named}
            self._named, self._aliases, self._unnamed, self._default = (
                named,
                aliases,
                unnamed,
                default,
            )
        if unnamed is not None and default not in named:
            self.scorer_for(default)  # active from the start, as a single estimator always was
        self._announce(None if unnamed_spec is None else unnamed_spec.path)

    def _reuse_unnamed(self, path: Path) -> Scorer:
        sha = file_sha256(path)
        old = self._unnamed
        if old is not None and old.sha256 == sha:
            return old
        # a template: per-key scorers are made from it (`scorer_for`); registering it
        # under "" is what a single unnamed estimator always did
        return Scorer(load_estimator(path), sha, self.storage, "", path=path, card=read_card(path))

    @staticmethod
    def _check_aliases(named: dict[str, tuple[str, ...]]) -> dict[str, str]:
        aliases: dict[str, str] = {}
        for name, given in named.items():
            for alias in given:
                if alias == name:
                    continue
                owner = aliases.get(alias) or (alias if alias in named else None)
                if owner is not None:
                    raise ConfigError(
                        f"alias {alias!r} of model {name!r} is already the "
                        f"{'name' if owner == alias else 'alias'} of model {owner!r}"
                    )
                aliases[alias] = name
        return aliases

    @staticmethod
    def _default_key(
        named: set[str],
        aliases: dict[str, str],
        unnamed: ModelSpec | None,
        default_model: str | None,
    ) -> str:
        if default_model is not None:
            return aliases.get(default_model, default_model)
        if len(named) == 1 and unnamed is None:
            return next(iter(named))
        return ""

    def _announce(self, unnamed_path: Path | None) -> None:
        for served in self._named.values():
            s = served.scorer
            log.info(
                "model %r: estimator %s (scorer %d)%s",
                served.name,
                s.path,
                s.base.id,
                f", aliases {list(served.aliases)}" if served.aliases else "",
                extra={"model": served.name, "scorer_id": s.base.id},
            )
        if unnamed_path is not None:
            log.warning(
                "the estimator %s records no model name: it scores the traces of every model "
                "without an estimator of its own, and their estimates are marked as scored by "
                "an estimator fitted on another model's traces; record the name with `sentinel "
                "fit --model-name`, or serve it as --model NAME=PATH",
                unnamed_path,
            )
        elif len(self._named) > 1 and self._default == "":
            log.warning(
                "%d models are served and default_model is not set: traces that name no "
                "model are stored unscored (model ''); set default_model or send `model`",
                len(self._named),
            )

    # ------------------------------------------------------------------ routing
    def key(self, model: str | None) -> str:
        """The model key of a trace that names ``model`` (None: names none)."""
        if not model:
            return self._default
        return self._aliases.get(model, model)

    def estimator_for(self, key: str) -> Scorer | None:
        """A scorer with the estimator of model ``key`` (to check traces against), None
        when no estimator serves it; unlike `scorer_for`, registers nothing."""
        served = self._named.get(key)
        if served is not None:
            return served.scorer
        return self._by_key.get(key) or self._unnamed

    def scorer_for(self, key: str) -> Scorer | None:
        """The scorer of model ``key`` (registered and activated for it on first use by
        the unnamed estimator), or None when no estimator serves it."""
        served = self._named.get(key)
        if served is not None:
            return served.scorer
        unnamed = self._unnamed
        if unnamed is None:
            return None
        with self._lock:
            scorer = self._by_key.get(key)
            if scorer is None:
                if key == unnamed.model:
                    scorer = unnamed.activate()
                else:
                    scorer = Scorer(
                        unnamed.estimator,
                        unnamed.sha256,
                        self.storage,
                        key,
                        path=unnamed.path,
                        card=unnamed.card,
                    ).activate()
                self._by_key[key] = scorer
            return scorer

    def unserved(self, key: str) -> None:
        """Log that a trace of ``key`` waits (at most once per model per 10 minutes)."""
        now = time.monotonic()
        if now - self._warned.get(key, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[key] = now
            log.warning(
                "no estimator for model %r: its traces are stored unscored and will be scored "
                "when one is registered (settings [models], then SIGHUP)",
                key,
                extra={"model": key},
            )

    # ---------------------------------------------------------------- queries
    @property
    def default_key(self) -> str:
        return self._default

    def default_scorer(self) -> Scorer | None:
        """The scorer of the default key, if it has one already (nothing is created)."""
        served = self._named.get(self._default)
        return served.scorer if served is not None else self._by_key.get(self._default)

    def served(self) -> list[Served]:
        """The configured models, by name."""
        return sorted(self._named.values(), key=lambda s: s.name)

    def aliases_of(self, name: str) -> tuple[str, ...]:
        served = self._named.get(name)
        return () if served is None else served.aliases

    @property
    def serves_every_model(self) -> bool:
        """True when an unnamed estimator scores models without one of their own."""
        return self._unnamed is not None

    def serves(self, key: str) -> bool:
        """True when traces of ``key`` are scored on arrival."""
        return key in self._named or self._unnamed is not None

    def scorers(self) -> list[Scorer]:
        """Every scorer in use: the named models' and the unnamed estimator's per key."""
        with self._lock:
            return [s.scorer for s in self._named.values()] + list(self._by_key.values())

    # --------------------------------------------------------------- rescoring
    def _plans(self) -> list[tuple[Scorer, list[str]]]:
        plans = [(s.scorer, [s.name, *s.aliases]) for s in self.served()]
        if self._unnamed is not None:
            claimed = set(self._named) | set(self._aliases)
            known = {s.model for s in self.storage.active_scorers()}
            for key in sorted(known | set(self.storage.waiting_models())):
                if key not in claimed:
                    # stored before this unnamed estimator came: it serves them from now
                    self.scorer_for(key)
            with self._lock:
                plans += [(s, [k]) for k, s in sorted(self._by_key.items())]
        return plans

    def rescore_pending(self, *, limit: int = 2000, max_chunks: int | None = None) -> int:
        """`Scorer.rescore_pending` for every model (waiting traces included)."""
        return sum(
            s.rescore_pending(limit=limit, max_chunks=max_chunks, names=names)
            for s, names in self._plans()
        )

    def pending(self, model: str | None = None) -> int:
        """Traces `rescore_pending` would still move or score (of ``model``, or of all)."""
        return sum(
            s.pending(names) for s, names in self._plans() if model is None or s.model == model
        )
