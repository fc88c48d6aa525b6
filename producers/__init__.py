"""Publishing API: commands and events onto Kafka, acked by the broker before returning."""

from producers.publisher import Publisher, PublishError, producer_config

__all__ = ["PublishError", "Publisher", "producer_config"]
