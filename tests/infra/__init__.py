"""Test infrastructure on one Debian machine: SSH hosts in network namespaces, a real Slurm.

- :mod:`tests.infra.netns`: N hosts, each a network namespace on a private bridge with its own
  sshd, hostname and copy-on-write ``/etc /opt /var/lib /usr/local /root`` (nothing can leave
  the machine: no route, no NAT).
- :mod:`tests.infra.slurm`: a private munged, slurmctld on the bridge address and one slurmd in
  each compute host (so ``node3`` is one host for SSH and for Slurm), with fake GPUs.
- :mod:`tests.infra.docker_wrapper`, :mod:`tests.infra.image`, :mod:`tests.infra.fake_devices`:
  a ``docker`` command backed by rootful podman, the test image
  ``rocm/amd-mlperf:smoke_training_6.0`` (debootstrap'd, cached) and fake ``/dev/kfd``,
  ``/dev/dri`` nodes, for the single-node docker launch path.

Everything runs as root, is started as child processes whose PIDs are recorded, and is stopped
by those PIDs (never by name). Names (bridge, namespaces, veths), the /24 subnet and the Slurm
controller port are chosen per instance, so several test sessions can run side by side.
Adapted from the project's shell recipes; nothing here is needed at run time.
"""
