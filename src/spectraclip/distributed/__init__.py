"""Running the one encode path (`spectraclip.inference`) at scale: on Ray Data (`ray_engine`), as shard i of n
for job arrays (`shards`), and merging the parts into one embeddings table (`merge`)."""
