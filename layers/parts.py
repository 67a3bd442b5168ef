"""A batch held as parts: the two helpers of the layers that must see the whole batch.

In training, the threads-over-shards executor (model/shards.py) keeps each batch cut
along its first axis into one part per worker thread. Batch norm's statistics and
dropout's masks belong to the whole batch, so those layers have a ``_parts`` version
beside their whole-batch one (the definition, which the parts version is tested
against): it takes the list of parts and a ``map_parts`` function that runs the
per-part work (on the worker threads there, or serially here).
"""


def serial_map(function, items):
    """``[function(item) for item in items]``: the default ``map_parts``, on one thread."""
    return [function(item) for item in items]


def in_order_sum(arrays):
    """arrays[0] + arrays[1] + ..., added in list order, so that the result is repeatable."""
    total = arrays[0]
    for array in arrays[1:]:
        total = total + array
    return total
