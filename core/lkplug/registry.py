"""The registry: every component that the loaded plugins declare, by role and name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

import pluggy

from .components import Component
from .errors import UnknownComponentError, UsageError
from .manager import PluginInfo, make_plugin_manager, record_failure

ROLES = ("source", "processor", "sink")
HOOK_OF_ROLE = {"source": "lkplug_sources", "processor": "lkplug_processors", "sink": "lkplug_sinks"}


@dataclass(frozen=True)
class Entry:
    """A component with the role it plays and the plugin that provides it."""

    component: Component
    role: str
    plugin: PluginInfo

    @property
    def name(self) -> str:
        return self.component.name


class Registry:
    def __init__(self, pm: pluggy.PluginManager, plugins: list[PluginInfo]):
        self.pm = pm
        self.plugins = plugins
        self._entries: dict[tuple[str, str], Entry] = {}
        self._duplicates: dict[tuple[str, str], list[Entry]] = {}
        by_name = {info.name: info for info in plugins}
        for role in ROLES:
            for impl in getattr(pm.hook, HOOK_OF_ROLE[role]).get_hookimpls():
                info = by_name[impl.plugin_name]
                try:
                    components = list(impl.function() or ())
                    for component in components:
                        if not isinstance(component, Component):
                            raise TypeError(f"{HOOK_OF_ROLE[role]} returned {component!r}")
                except Exception as exc:
                    record_failure(info, exc)
                    continue
                for component in components:
                    self._add(Entry(component, role, info))

    @classmethod
    def load(
        cls, plugins: Iterable[str] = (), load_entrypoints: bool = True, environment: bool = True
    ) -> Registry:
        """Load every installed plugin plus the ``-p`` ones (see ``make_plugin_manager``)."""
        return cls(*make_plugin_manager(plugins, load_entrypoints, environment))

    def _add(self, entry: Entry) -> None:
        key = (entry.role, entry.name)
        if key in self._entries:
            self._duplicates.setdefault(key, [self._entries[key]]).append(entry)
            return
        self._entries[key] = entry

    def entries(self, role: str | None = None) -> list[Entry]:
        return [e for e in self._entries.values() if role is None or e.role == role]

    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins if info.error]

    def duplicates(self) -> list[list[Entry]]:
        return list(self._duplicates.values())

    def get(self, role: str, name: str) -> Entry:
        key = (role, name)
        if key in self._duplicates:
            providers = " and ".join(e.plugin.provider for e in self._duplicates[key])
            blockable = ", ".join(f"-p no:{e.plugin.name}" for e in self._duplicates[key])
            raise UsageError(f"{role} {name!r} is provided by both {providers}; disable one ({blockable})")
        if key in self._entries:
            return self._entries[key]
        raise UnknownComponentError(self._unknown_message(role, name))

    def find(self, name: str) -> list[Entry]:
        """Every role that has a component called ``name`` (for `lkplug inspect`)."""
        found = [self._entries[(role, name)] for role in ROLES if (role, name) in self._entries]
        if not found:
            raise UnknownComponentError(self._unknown_message("component", name))
        return found

    def converter(self, conversion: str) -> Entry | None:
        """The processor to insert for a conversion such as "rate", if any plugin provides one."""
        return next((e for e in self.entries("processor") if conversion in e.component.converts), None)

    def register_commands(self, cli) -> None:
        for function in self._hook_functions("lkplug_register_commands"):
            function(cli=cli)

    def run_options(self) -> list:
        return [option for function in self._hook_functions("lkplug_run_options") for option in function()]

    def _hook_functions(self, hook: str):
        """Each plugin's implementation of ``hook``, wrapped so a failure marks only that plugin."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            info = next(i for i in self.plugins if i.name == impl.plugin_name)

            def call(*args, _impl=impl, _info=info, **kwargs):
                try:
                    return _impl.function(*args, **kwargs) or ()
                except Exception as exc:
                    record_failure(_info, exc)
                    return ()

            yield call

    def _unknown_message(self, role: str, name: str) -> str:
        names = sorted({e.name for e in self.entries(None if role == "component" else role)})
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        broken = [i.name for i in self.broken()]
        also = f" (plugins that failed to load: {', '.join(broken)})" if broken else ""
        return f"unknown {role} {name!r}{hint} `lkplug list` shows all{also}"
