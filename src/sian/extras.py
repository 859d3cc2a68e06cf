"""Optional features and the extras that install them.

The core install (``pip install sian-derain``) derains, evaluates, runs the demo and manages weights. Training,
explanations, the web server, ONNX and video each need an extra (``pip install 'sian-derain[serve]'``); which
distributions an extra brings is read from the installed package's own metadata, so ``pyproject.toml`` is the
one place that says it.

    >>> from sian.extras import missing_distributions
    >>> missing_distributions("no-such-extra")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown extra 'no-such-extra'; sian-derain's extras: ...
"""

from __future__ import annotations

import re
from importlib import metadata

DISTRIBUTION = "sian-derain"

_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]*)\])?")


class MissingExtraError(ImportError):
    """A feature's optional dependencies are not installed; the message says which extra brings them."""

    def __init__(self, feature: str, extra: str, missing: list[str]):
        self.feature, self.extra, self.missing = feature, extra, missing
        super().__init__(
            f"{feature} needs the [{extra}] extra (missing: {', '.join(missing)}): "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements_by_extra() -> dict[str, list[tuple[str, list[str]]]]:
    """``{extra: [(distribution, its extras), ...]}`` from the installed metadata; ``""`` is the core."""
    table: dict[str, list[tuple[str, list[str]]]] = {}
    for line in metadata.requires(DISTRIBUTION) or []:
        requirement, _, marker = line.partition(";")
        extra = _EXTRA_MARKER.search(marker)
        name = _NAME.match(requirement)
        if name is None:
            continue
        nested = [e.strip() for e in (name.group(2) or "").split(",") if e.strip()]
        table.setdefault(extra.group(1) if extra else "", []).append((name.group(1), nested))
    for extra in metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or []:
        table.setdefault(extra, [])
    return table


def missing_distributions(extra: str) -> list[str]:
    """The distributions that ``extra`` (and the extras it includes) needs but this environment lacks.

    Returns an empty list when ``sian-derain`` itself is not installed as a distribution (a source tree on
    ``sys.path``): there is no metadata to read, and the imports speak for themselves.
    """
    try:
        table = _requirements_by_extra()
    except metadata.PackageNotFoundError:
        return []
    if extra not in table:
        raise ValueError(
            f"unknown extra {extra!r}; {DISTRIBUTION}'s extras: {', '.join(sorted(e for e in table if e))}"
        )
    missing: list[str] = []
    pending, seen = [extra], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, nested in table.get(current, []):
            if _normalize(name) == DISTRIBUTION:
                pending.extend(nested)
                continue
            try:
                metadata.version(name)
            except metadata.PackageNotFoundError:
                missing.append(name)
    return sorted(set(missing))


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` when any of its distributions is missing.

    Args:
        extra: the extra's name in ``pyproject.toml``, e.g. ``"serve"``.
        feature: what needs it, as the user knows it, e.g. ``"sian serve"``.
    """
    missing = missing_distributions(extra)
    if missing:
        raise MissingExtraError(feature, extra, missing)
