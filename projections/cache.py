"""The rows of the workflows a projector is folding, kept between its batches.

A batch folds its events into the current rows of their workflows, so every batch used
to read those rows back from PostgreSQL although this projector wrote them one batch
before. :class:`RowCache` keeps them instead, for the workflows this writer saw start.

Why a kept row is the stored row: a workflow's events all live on one partition, and a
batch writes a partition's rows only after :func:`foldflow.projections.store.write_batch`
has checked, under the row lock, that the partition's stored position is still the one
this writer committed last. Any other writer of that partition (another projector after a
rebalance, a rebuild swapped in, a reset) moves the position, and a moved partition's rows
are forgotten (:meth:`RowCache.forget`, also on every seek and revoke). A batch's rows
enter the cache only once its transaction committed (:meth:`RowCache.apply`); one written
event by event (a refused value) forgets its partitions instead.

Bounds: at most ``max_workflows`` workflows (least recently used leave first), each kept
only while the events folded into it add up to at most ``max_bytes`` on the wire;
a workflow leaves when it ends. Workflows that started before this writer took their
partition are read from PostgreSQL as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from foldflow.projections.apply import Fold, InstanceRow, StepRow
from foldflow.projections.models import TERMINAL_STATUSES

__all__ = ["CacheUpdate", "CachedRows", "RowCache", "TopicPartition"]

#: (topic, partition)
TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class CachedRows:
    """One workflow's current rows and the wire bytes of the events folded into them."""

    instance: InstanceRow
    steps: Mapping[str, StepRow]
    size: int


#: What a committed batch changes in the cache: rows to keep, or None to forget.
CacheUpdate = dict[tuple[TopicPartition, str], CachedRows | None]


class RowCache:
    """Current rows per (partition, workflow id), bounded (see the module doc)."""

    def __init__(self, *, max_workflows: int = 2_048, max_bytes: int = 8_192) -> None:
        self.max_workflows = max_workflows
        self.max_bytes = max_bytes
        self._rows: OrderedDict[tuple[TopicPartition, str], CachedRows] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, where: Mapping[str, TopicPartition]) -> tuple[
        dict[str, InstanceRow], dict[tuple[str, str], StepRow]
    ]:
        """The kept rows of the workflows of ``where`` (workflow id → its partition)."""
        instances: dict[str, InstanceRow] = {}
        steps: dict[tuple[str, str], StepRow] = {}
        for workflow_id, tp in where.items():
            kept = self._rows.get((tp, workflow_id))
            if kept is None:
                continue
            instances[workflow_id] = kept.instance
            steps.update(((workflow_id, step_id), row) for step_id, row in kept.steps.items())
        return instances, steps

    def update(
        self,
        fold: Fold,
        *,
        before: Mapping[str, InstanceRow],
        where: Mapping[str, TopicPartition],
        sizes: Mapping[str, int],
    ) -> CacheUpdate:
        """What committing ``fold`` changes here. ``before`` holds the instance rows the
        fold started from (kept or read); a workflow absent from it started in this batch.
        Apply the changes with :meth:`apply` once the batch committed."""
        new_steps: dict[str, dict[str, StepRow]] = {}
        for (workflow_id, step_id), row in fold.steps.items():
            new_steps.setdefault(workflow_id, {})[step_id] = row
        changes: CacheUpdate = {}
        for workflow_id, instance in fold.instances.items():
            key = (where[workflow_id], workflow_id)
            kept = self._rows.get(key)
            if kept is None and workflow_id in before:
                continue  # read from PostgreSQL: started before this writer saw it
            size = (kept.size if kept else 0) + sizes.get(workflow_id, 0)
            if instance.status in TERMINAL_STATUSES or size > self.max_bytes:
                changes[key] = None
                continue
            steps = {**(kept.steps if kept else {}), **new_steps.get(workflow_id, {})}
            changes[key] = CachedRows(instance, steps, size)
        return changes

    def apply(self, changes: CacheUpdate) -> None:
        """Keep what a committed batch wrote (least recently used leave past the bound)."""
        for key, rows in changes.items():
            if rows is None:
                self._rows.pop(key, None)
            else:
                self._rows[key] = rows
                self._rows.move_to_end(key)
        while len(self._rows) > self.max_workflows:
            self._rows.popitem(last=False)

    def forget(self, tp: TopicPartition) -> None:
        """Drop every row of partition ``tp`` (its stored rows may have changed)."""
        for key in [k for k in self._rows if k[0] == tp]:
            del self._rows[key]
