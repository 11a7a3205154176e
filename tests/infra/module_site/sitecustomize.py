"""Imported at interpreter start when this folder is on PYTHONPATH (tests/infra/node_alias.py
``module_env``): a module file run by a test finds ``ansible.module_utils.<node file>``."""

from tests.infra import node_alias

node_alias.install()
