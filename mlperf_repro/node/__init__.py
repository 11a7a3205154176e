"""Code that runs on the nodes.

Every file here is standard-library only and self-contained: Ansible ships it to the nodes as
``ansible.module_utils.<name>`` (``module_utils`` in ansible.cfg points at this folder), while the
controller, the CLI and the tests import it as ``mlperf_repro.node.<name>``.
"""
