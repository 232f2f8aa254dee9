"""Prometheus families of the model zoo, read from its table at scrape time: budget, resident
bytes per model, evictions by model and priority, loads and load seconds from disk vs host
memory, and lease hits and misses."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hearthwatch.runtime.zoo.registry import ModelZoo


class ZooCollector(Collector):
    def __init__(self, zoo: ModelZoo):
        self._zoo = zoo

    def collect(self) -> Iterator[Metric]:
        budget = GaugeMetricFamily("hearthwatch_zoo_budget_bytes", "Memory budget of the zoo")
        budget.add_metric([], self._zoo.budget_bytes)
        resident = GaugeMetricFamily(
            "hearthwatch_zoo_resident_bytes", "Device bytes held per model", labels=["model"]
        )
        evictions = CounterMetricFamily(
            "hearthwatch_zoo_evictions", "Evictions", labels=["model", "priority"]
        )
        loads = CounterMetricFamily(
            "hearthwatch_zoo_loads", "Loads onto the device", labels=["model", "source"]
        )
        load_seconds = CounterMetricFamily(
            "hearthwatch_zoo_load_seconds", "Time spent loading", labels=["model", "source"]
        )
        requests = CounterMetricFamily(
            "hearthwatch_zoo_requests",
            "Leases that found the model loaded (hit) or not (miss)",
            labels=["model", "result"],
        )
        for row in self._zoo.stats():
            resident.add_metric([row.name], row.resident_bytes)
            evictions.add_metric([row.name, row.priority], row.evictions)
            loads.add_metric([row.name, "disk"], row.loads_from_disk)
            loads.add_metric([row.name, "host"], row.loads_from_host)
            load_seconds.add_metric([row.name, "disk"], row.load_s_from_disk)
            load_seconds.add_metric([row.name, "host"], row.load_s_from_host)
            requests.add_metric([row.name, "hit"], row.hits)
            requests.add_metric([row.name, "miss"], row.misses)
        yield from (budget, resident, evictions, loads, load_seconds, requests)
