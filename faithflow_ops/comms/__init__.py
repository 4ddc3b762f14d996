"""Communications: the outbox every module enqueues through, templates, contacts, dispatch."""
