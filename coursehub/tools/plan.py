"""Capacity and cost planning for a class: one machine, or a Kubernetes cluster (pure arithmetic).

The rules, with their sources:
- concurrency: plan for 40-60 % of a class at once (The Littlest JupyterHub); sizes use the high end;
- memory of one student's server = the memory their work needs + Jupyter's own per-user overhead
  (measured by `coursehub bench` on this machine, else the stock JupyterHub figures of the project's
  own benchmark run, the conservative case);
- one machine = concurrent × server memory + hub and proxy + the OS, and concurrent × CPU + a core
  for the hub (which is single-process); it also has to start the class: every server start costs
  CPU-seconds (measured, else stock JupyterHub's 1.9 CPU-s), so a burst queues behind the machine's cores;
- Kubernetes: user pods request their full memory (no overcommit), nodes lose some memory and CPU
  to the system, and user placeholders keep room warm so that while new nodes boot no more than
  ~30 % of the class waits (2i2c's guidance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from coursehub.errors import ConfigError
from coursehub.settings.base import format_size

MIB, GIB = 1024**2, 1024**3
OS_RESERVE = 1 * GIB  # left to the operating system on a single machine
HUB_CORES = 1.0  # the hub is one process: give it a core of its own
NODE_RESERVED_MEMORY = 1 * GIB  # kubelet, system pods and eviction threshold, per node …
NODE_RESERVED_FRACTION = 0.06  # … plus this share of the node's memory
NODE_RESERVED_CPU = 0.25
MAX_USER_PODS = 100  # Kubernetes' default 110 pods per node, minus system pods
SINGLE_MACHINE_STUDENTS = 100  # The Littlest JupyterHub: "0-100 users on a single server"
START_TIMEOUT = 300  # coursehub's default hub.start_timeout
ROUND = 64 * MIB  # memory limits are rounded up to this


@dataclass(frozen=True)
class Overhead:
    """What Jupyter itself costs, per user and for the hub."""

    # Defaults: stock JupyterHub's row of the benchmark run committed in bench-results/results.json
    # (`coursehub bench`, 2026-11-22, 2 cores, JupyterHub 6.1.1, JupyterLab 4.6.6). Stock rather than
    # coursehub's own row because a cluster's pods start without the fork server: the safe side.
    server_memory: int = 143 * MIB  # PSS of an idle JupyterLab server with its kernel (142.7)
    hub_memory: int = 173 * MIB  # hub and configurable-http-proxy (173.0)
    cpu_seconds_per_start: float = 1.9  # one jupyterhub-singleuser start (median)
    source: str = "stock JupyterHub in coursehub's benchmark run of 2026-11-22 (2 cores, JupyterHub 6.1.1)"


@dataclass(frozen=True)
class Machine:
    """A machine one can rent, with its price."""

    name: str
    vcpus: float
    memory: int  # bytes
    hourly: float

    def describe(self) -> str:
        return f"{self.name} ({self.vcpus:g} vCPU, {self.memory / GIB:g} GiB)"


@dataclass(frozen=True)
class PriceTable:
    """Machines and the cluster fee, in one currency, as of a date."""

    machines: tuple[Machine, ...]
    currency: str = "USD"
    as_of: str = ""
    note: str = ""
    cluster_hourly: float = 0.0  # a managed Kubernetes control plane
    hours_per_month: float = 730.0


@dataclass(frozen=True)
class PlanInputs:
    """What the organiser knows about the class."""

    students: int
    memory: int  # what one student's work needs, in bytes (Jupyter's overhead is added)
    cpu: float = 0.5  # cores one active student uses on average
    concurrency: tuple[float, float] = (0.4, 0.6)
    arrival_rate: float = 1.0  # students per second at the start of class
    node_boot_seconds: float = 300.0
    max_waiting: float = 0.3  # share of the class that may wait for a new node


@dataclass
class SingleMachinePlan:
    """One machine for the whole class."""

    memory_needed: int
    cores_needed: float
    machine: Machine | None
    start_all_seconds: float = 0.0  # the burst: every concurrent server started
    monthly: float = 0.0


@dataclass
class ClusterPlan:
    """A Kubernetes cluster: user nodes of one type, placeholders, a core node."""

    node: Machine
    users_per_node: int
    nodes_at_peak: int
    nodes_idle: int
    placeholders: int
    arrivals_during_boot: int
    waiting_share: float
    core_node: Machine | None
    monthly_peak: float
    monthly_idle: float


@dataclass
class Plan:
    """The answer: sizes, costs, what to choose, and the coursehub.yaml that goes with it."""

    inputs: PlanInputs
    overhead: Overhead
    prices: PriceTable
    concurrent_low: int
    concurrent: int
    server_memory: int  # the memory limit of each student's server
    cpu_limit: float
    single: SingleMachinePlan
    cluster: ClusterPlan | None
    recommendation: str  # 'single' or 'kubernetes'
    notes: list[str] = field(default_factory=list)


def check_inputs(inputs: PlanInputs) -> None:
    """Reject inputs no plan can be made from, saying what is wrong and what would do."""
    low, high = inputs.concurrency
    problems = []
    if inputs.students < 1:
        problems.append(f"the class needs at least 1 student (got {inputs.students})")
    if inputs.memory <= 0:
        problems.append(f"memory per student must be positive, e.g. 2G (got {inputs.memory} bytes)")
    if inputs.cpu <= 0:
        problems.append(f"CPU per student must be positive, e.g. 0.5 (got {inputs.cpu})")
    if not 0 < low <= high <= 1:
        problems.append(
            f"concurrency must be shares within 0 and 1, low ≤ high, e.g. 0.4-0.6 (got {low}-{high})"
        )
    if inputs.arrival_rate <= 0:
        problems.append(f"the arrival rate must be positive students per second (got {inputs.arrival_rate})")
    if inputs.node_boot_seconds < 0:
        problems.append(f"node boot time cannot be negative (got {inputs.node_boot_seconds})")
    if not 0 <= inputs.max_waiting < 1:
        problems.append(
            f"the share of students who may wait must be within 0 and 1 (got {inputs.max_waiting})"
        )
    if problems:
        raise ConfigError("cannot plan: " + "; ".join(problems))


def make_plan(inputs: PlanInputs, prices: PriceTable, overhead: Overhead | None = None) -> Plan:
    """Size a single machine and a cluster for the class, and say which to choose."""
    check_inputs(inputs)
    overhead = overhead or Overhead()
    if not prices.machines:
        raise ConfigError("the price table lists no machines")
    low, high = inputs.concurrency
    concurrent = max(1, math.ceil(inputs.students * high))
    server_memory = round_up(inputs.memory + overhead.server_memory, ROUND)
    cpu_limit = max(1.0, inputs.cpu)
    single = single_machine(concurrent, server_memory, inputs, overhead, prices)
    cluster = kubernetes_cluster(concurrent, server_memory, inputs, prices)
    plan = Plan(
        inputs=inputs,
        overhead=overhead,
        prices=prices,
        concurrent_low=max(1, math.ceil(inputs.students * low)),
        concurrent=concurrent,
        server_memory=server_memory,
        cpu_limit=cpu_limit,
        single=single,
        cluster=cluster,
        recommendation=recommend(inputs, single, cluster),
    )
    plan.notes = notes_for(plan)
    return plan


def round_up(value: int, step: int) -> int:
    """`value` rounded up to a multiple of `step`."""
    return -(-value // step) * step


def single_machine(
    concurrent: int, server_memory: int, inputs: PlanInputs, overhead: Overhead, prices: PriceTable
) -> SingleMachinePlan:
    """The cheapest machine of the table that holds every concurrent student at once."""
    memory = concurrent * server_memory + overhead.hub_memory + OS_RESERVE
    cores = math.ceil(concurrent * inputs.cpu + HUB_CORES)
    fitting = [m for m in prices.machines if m.memory >= memory and m.vcpus >= cores]
    machine = min(fitting, key=lambda m: (m.hourly, m.memory), default=None)
    plan = SingleMachinePlan(memory_needed=memory, cores_needed=cores, machine=machine)
    if machine is not None:
        starts_per_second = max(machine.vcpus - HUB_CORES, 1.0) / overhead.cpu_seconds_per_start
        plan.start_all_seconds = max(concurrent / inputs.arrival_rate, concurrent / starts_per_second)
        plan.monthly = machine.hourly * prices.hours_per_month
    return plan


def users_per_node(node: Machine, server_memory: int, cpu: float) -> int:
    """Student pods one node holds: memory and CPU requests against what the system leaves."""
    memory = node.memory * (1 - NODE_RESERVED_FRACTION) - NODE_RESERVED_MEMORY
    cores = node.vcpus - NODE_RESERVED_CPU
    return max(0, min(math.floor(memory / server_memory), math.floor(cores / cpu), MAX_USER_PODS))


def placeholders_for(concurrent: int, inputs: PlanInputs) -> tuple[int, int]:
    """(placeholders, students arriving while one node boots) so that at most max_waiting wait."""
    arrivals = min(concurrent, math.ceil(inputs.arrival_rate * inputs.node_boot_seconds))
    allowed = math.floor(inputs.max_waiting * concurrent)
    return max(0, arrivals - allowed), arrivals


def kubernetes_cluster(
    concurrent: int, server_memory: int, inputs: PlanInputs, prices: PriceTable
) -> ClusterPlan | None:
    """The node type and count that cost least for the class at its peak, with placeholders."""
    placeholders, arrivals = placeholders_for(concurrent, inputs)
    core = min(
        (m for m in prices.machines if m.vcpus >= 2 and m.memory >= 4 * GIB),
        key=lambda m: m.hourly,
        default=None,
    )
    fixed = (core.hourly if core else 0.0) + prices.cluster_hourly
    options = []
    for node in prices.machines:
        per_node = users_per_node(node, server_memory, inputs.cpu)
        if per_node < 1:
            continue
        peak = math.ceil((concurrent + placeholders) / per_node)
        idle = math.ceil(placeholders / per_node)
        options.append(
            ClusterPlan(
                node=node,
                users_per_node=per_node,
                nodes_at_peak=peak,
                nodes_idle=idle,
                placeholders=placeholders,
                arrivals_during_boot=arrivals,
                waiting_share=max(0, arrivals - placeholders) / concurrent,
                core_node=core,
                monthly_peak=(peak * node.hourly + fixed) * prices.hours_per_month,
                monthly_idle=(idle * node.hourly + fixed) * prices.hours_per_month,
            )
        )
    return min(options, key=lambda c: (c.monthly_peak, c.nodes_at_peak), default=None)


def recommend(inputs: PlanInputs, single: SingleMachinePlan, cluster: ClusterPlan | None) -> str:
    """'single' for classes up to 100 students that one machine holds, else 'kubernetes'."""
    if single.machine is not None and (inputs.students <= SINGLE_MACHINE_STUDENTS or cluster is None):
        return "single"
    if cluster is None:
        raise ConfigError(
            "no machine in the price table is big enough for one student's server "
            f"({format_size(round_up(inputs.memory, MIB))} plus Jupyter's overhead): add bigger machines"
        )
    return "kubernetes"


def notes_for(plan: Plan) -> list[str]:
    """Warnings an organiser should read before renting anything."""
    notes = []
    single = plan.single
    if single.machine is None:
        notes.append(
            f"no machine in the price table has {single.memory_needed / GIB:.0f} GiB and "
            f"{single.cores_needed:g} vCPUs: one machine cannot hold this class"
        )
    elif single.start_all_seconds > START_TIMEOUT and plan.recommendation == "single":
        notes.append(
            f"starting {plan.concurrent} servers at once takes about {single.start_all_seconds:.0f} s on "
            f"{single.machine.name}, past the {START_TIMEOUT} s start timeout: stagger arrivals "
            "(e.g. start the class in groups) or raise hub.start_timeout"
        )
    cluster = plan.cluster
    if cluster is not None and cluster.waiting_share > plan.inputs.max_waiting + 1e-9:
        notes.append(f"{cluster.waiting_share:.0%} of the class may wait for a node")
    if plan.inputs.students > 500:
        notes.append("a single JupyterHub saturates one core near 500 users logging in at ~2/s: pace logins")
    return notes


def plan_values(plan: Plan) -> dict:
    """The coursehub.yaml settings this plan implies (limits and the Kubernetes section)."""
    cluster = plan.cluster
    return {
        "limits": {"memory": format_size(plan.server_memory), "cpu": plan.cpu_limit},
        "kubernetes": {
            # Requests equal limits for memory: the nodes were sized for it, nobody is overcommitted.
            "guarantee": {"memory": 1.0, "cpu": round(min(1.0, plan.inputs.cpu / plan.cpu_limit), 3)},
            "scheduling": {"user_placeholders": cluster.placeholders if cluster else 0},
        },
    }
