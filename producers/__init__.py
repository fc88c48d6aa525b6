"""Publishing API: commands and events onto Kafka, acked by the broker before returning."""

from foldflow.producers.delivery import PublishError
from foldflow.producers.publisher import Publisher, dead_letter_headers, producer_config

__all__ = ["PublishError", "Publisher", "dead_letter_headers", "producer_config"]
