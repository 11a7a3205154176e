"""mlperf-repro: reproduce MLPerf Training results on a cluster, scored as MLCommons scores."""

__version__ = "0.1.0"
