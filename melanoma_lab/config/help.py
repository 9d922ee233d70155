"""``melanoma-lab <command> --help``: the config groups a user chooses from, without the internal configs.

Hydra's own ``$APP_CONFIG_GROUPS`` lists every config a group holds, the schemas (``_schema``, ``_sgd_schema``)
and the shared ``_common`` files included. ``conf/hydra/default.yaml``'s help template uses
``${melanoma_lab.config_groups:}`` instead: :func:`config_groups`, the same list without them.
"""

from __future__ import annotations

from omegaconf import OmegaConf

RESOLVER = "melanoma_lab.config_groups"


def _groups(loader, parent: str = "") -> list[str]:
    from hydra.core.object_type import ObjectType

    found = []
    for group in loader.list_groups(parent):
        name = f"{parent}/{group}" if parent else group
        if name == "hydra" or group.startswith("_"):
            continue
        if loader.get_group_options(name, ObjectType.CONFIG):
            found.append(name)
        found += _groups(loader, name)
    return found


def config_groups() -> str:
    """``group: option, option`` lines of the app's config groups (Hydra's own and internal configs left out)."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return ""
    loader = GlobalHydra.instance().config_loader()
    lines = []
    for group in sorted(_groups(loader)):
        options = sorted(o for o in loader.get_group_options(group) if not o.startswith("_"))
        if options:
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines)


def register_help() -> None:
    OmegaConf.register_new_resolver(RESOLVER, config_groups, replace=True, use_cache=False)
