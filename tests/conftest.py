"""What every test shares: the modules in library/ importable in the test process
(``ansible.module_utils.<name>`` is ``mlperf_repro.node.<name>``, as Ansible ships it; see
tests/infra/node_alias.py)."""

from tests.infra import node_alias

node_alias.install()
