"""Access-control agent: adapters for door controllers and face gates, the push endpoint, a simulator."""
