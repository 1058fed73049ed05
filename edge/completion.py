"""Shell completion for ``edge``: the scripts ``edge completion bash|zsh`` print, and the
candidates they ask for with ``edge __complete WORD... PARTIAL`` (one per line).

Candidates come from the argparse tree (commands, options, choices), so a new command or
flag completes without editing this file; topic, group and drive names come from the running
broker when it answers within ``BROKER_WAIT_S`` (else none: completion never hangs a shell).
File arguments print nothing, and the shells fall back to file names.
"""

from __future__ import annotations

import argparse
import os

BROKER_WAIT_S = 0.3
TOPIC_DESTS = {"topic", "topics"}
TOPIC_POSITIONALS = {("topics", "describe"): "topic", ("topics", "delete"): "topic", ("consume",): "topic",
                     ("produce",): "topic", ("groups", "describe"): "group", ("groups", "reset"): "group"}

BASH = r'''# bash completion for edge: eval "$(edge completion bash)" (e.g. in ~/.bashrc)
_edge_complete() {
  local IFS=$'\n'
  COMPREPLY=($(edge __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _edge_complete edge
'''

ZSH = r'''#compdef edge
# zsh completion for edge: eval "$(edge completion zsh)" (after compinit, e.g. in ~/.zshrc)
_edge() {
  local -a candidates
  candidates=("${(@f)$(edge __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if (( ${#candidates} )) && [[ -n "${candidates[1]}" ]]; then
    compadd -- "${candidates[@]}"
  else
    _files
  fi
}
compdef _edge edge
'''

SCRIPTS = {"bash": BASH, "zsh": ZSH}


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def _broker_names(kind: str) -> list[str]:
    """Topic, group or drive names from the running broker, or none when it does not answer fast."""
    from broker.client import Admin
    from broker.errors import BrokerError

    from .commands.common import load_app_config

    try:
        endpoint = os.environ.get("EDGE_ENDPOINT") or load_app_config(argparse.Namespace()).broker.resolved_endpoint()
        with Admin(endpoint, timeout_s=BROKER_WAIT_S) as admin:
            if kind == "group":
                return sorted(admin.list_groups())
            return sorted(t for t in admin.list_topics() if not t.startswith("_"))
    except (BrokerError, ValueError, OSError):
        return []


def candidates(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What may come next after ``words[:-1]``, starting with ``words[-1]``."""
    partial = words[-1] if words else ""
    path: list[str] = []
    pending: argparse.Action | None = None  # an option whose value comes next
    positionals = 0
    for word in words[:-1]:
        if pending is not None:
            pending = None
            continue
        sub = _subparsers(parser)
        if word.startswith("-"):
            action = _option(parser, word.split("=", 1)[0])
            if action is not None and action.nargs != 0 and "=" not in word:
                pending = action
        elif sub is not None and word in sub.choices:
            parser = sub.choices[word]
            path.append(word)
            positionals = 0
        else:
            positionals += 1
    if pending is not None:
        if pending.choices:
            found = [str(c) for c in pending.choices]
        elif pending.dest in TOPIC_DESTS:
            found = _broker_names("topic")
        elif pending.dest == "group":
            found = _broker_names("group")
        else:
            found = []  # a file, a number, a time: the shell offers files
    elif partial.startswith("-"):
        found = [flag for a in parser._actions if a.help != argparse.SUPPRESS for flag in a.option_strings
                 if flag.startswith("--")]
    elif (sub := _subparsers(parser)) is not None:
        found = list(sub.choices)
    else:
        kind = TOPIC_POSITIONALS.get(tuple(path)) if positionals == 0 else None
        found = _broker_names(kind) if kind else []
        for action in parser._actions:  # a positional with choices (edge drives list|start|stop)
            if not action.option_strings and action.choices and positionals == 0:
                found += [str(c) for c in action.choices]
    return [c for c in found if c.startswith(partial)]


def complete_main(words: list[str]) -> int:
    from .cli import build_parser

    for candidate in candidates(build_parser(), words or [""]):
        print(candidate)
    return 0
