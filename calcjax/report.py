"""Placeholder until this subcommand lands."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from calcjax.cli import UsageError

    raise UsageError("this command is not built yet")
