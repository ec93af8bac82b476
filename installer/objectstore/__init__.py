"""The object store both backups and log exports use: settings, the S3 client, streaming uploads
through s3transfer, cleanup of unfinished uploads, listing and retention helpers.

A foundation package: it imports only the standard library, boto3/botocore/s3transfer and
installer.errors, so any domain package can use it.
"""

from .maintenance import (
    Stored,
    abort_uploads,
    delete_keys,
    delete_units,
    list_objects,
    never_newest,
    unfinished_uploads,
)
from .store import ChecksumMode, CredentialsSource, ObjectStore, client, content_md5, errors, is_missing
from .transfer import (
    IN_FLIGHT,
    PART_SIZE,
    UploadAborted,
    UploadSink,
    part_size_for,
    transfer_config,
    upload_stream,
)

__all__ = [
    "IN_FLIGHT", "PART_SIZE", "ChecksumMode", "CredentialsSource", "ObjectStore", "Stored", "UploadAborted", "UploadSink",
    "abort_uploads", "client", "content_md5", "delete_keys", "delete_units", "errors", "is_missing", "list_objects",
    "never_newest", "part_size_for", "transfer_config", "unfinished_uploads", "upload_stream",
]
