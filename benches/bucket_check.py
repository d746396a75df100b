"""Checks what one timed run of benches/bucket.sh left in the bucket, then
empties its prefix. Run with the Python of the awscli venv (botocore).

    bucket_check.py mdl|peer BUCKET PREFIX MANIFEST [--keep]

MANIFEST: one line per file, "NAME SIZE SHA256 FILE_ID" (NAME relative to
the local source directory).
- mdl: exactly one object per file id under PREFIX, each carrying user
  metadata file-id and sha256 (minimax-dl's) equal to the manifest's, and
  the manifest's size;
- peer: an object PREFIX/NAME of the manifest's size for every line, and
  nothing else under PREFIX.
Either way, no multipart upload may be left open under PREFIX. Exit 1 with
a message on the first difference. Credentials and endpoint come from the
environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

try:
    import botocore.config
    import botocore.session
except ImportError:  # awscli 1.46+ vendors botocore as awscli.botocore
    import awscli  # noqa: F401  (makes `botocore` importable)
    import botocore.config
    import botocore.session


def main():
    mode, bucket, prefix, manifest = sys.argv[1:5]
    keep = "--keep" in sys.argv[5:]
    prefix = prefix.rstrip("/") + "/"
    files = []
    with open(manifest) as f:
        for line in f:
            name, size, sha, file_id = line.split()
            files.append((name, int(size), sha, file_id))
    session = botocore.session.get_session()
    s3 = session.create_client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=botocore.config.Config(max_pool_connections=16),
    )
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            objects[o["Key"]] = o["Size"]

    def fail(message):
        print(f"bucket_check: {mode} s3://{bucket}/{prefix}: {message}", file=sys.stderr)
        sys.exit(1)

    if len(objects) != len(files):
        fail(f"{len(objects)} objects, expected {len(files)}")
    if mode == "peer":
        for name, size, _, _ in files:
            got = objects.get(prefix + name)
            if got != size:
                fail(f"{name}: {'no object' if got is None else f'{got} bytes'}, expected {size}")
    else:
        by_id = {file_id: (size, sha) for _, size, sha, file_id in files}
        heads = ThreadPoolExecutor(16).map(
            lambda key: (key, s3.head_object(Bucket=bucket, Key=key)), list(objects)
        )
        seen = set()
        for key, head in heads:
            meta = head.get("Metadata", {})
            file_id = meta.get("file-id")
            if file_id not in by_id:
                fail(f"{key}: file-id metadata {file_id!r} is not one of the run's files")
            if file_id in seen:
                fail(f"{key}: a second object for file {file_id}")
            seen.add(file_id)
            size, sha = by_id[file_id]
            if head["ContentLength"] != size or objects[key] != size:
                fail(f"{key}: {head['ContentLength']} bytes, expected {size}")
            if meta.get("sha256") != sha:
                fail(f"{key}: sha256 metadata {meta.get('sha256')!r}, expected {sha}")
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    if uploads:
        fail(f"{len(uploads)} multipart upload(s) left open")
    if not keep:
        keys = list(objects)
        for i in range(0, len(keys), 1000):
            s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )
    print(f"   checked {len(files)} object(s) under s3://{bucket}/{prefix} ({mode})", file=sys.stderr)


if __name__ == "__main__":
    main()
