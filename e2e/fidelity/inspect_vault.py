"""Read a vault's versions, keys and certificates with Microsoft's official Python SDKs.

For the fidelity test of paging and of key and certificate bundles: lists every version of
one secret with SecretClient (following nextLink across pages), reads one certificate with
CertificateClient, its key with KeyClient and its backing secret with SecretClient, and prints
what they parsed as JSON on stdout.

Like read_secret.py it runs only behind the test world's proxy (HTTPS_PROXY, no NO_PROXY).
"""

import argparse
import base64
import json
import os
import sys

from azure.identity import ClientAssertionCredential
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant-id", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--vault-url", required=True)
    parser.add_argument("--secret-name", required=True, help="secret whose versions to list")
    parser.add_argument("--certificate-name", required=True)
    parser.add_argument("--token-file", required=True)
    return parser.parse_args()


def enum_text(value):
    """The wire string of an SDK enum member (or of a plain string)."""
    return getattr(value, "value", value)


def main():
    args = parse_args()

    if not (os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")):
        sys.exit("HTTPS_PROXY must name the test world's proxy; refusing to run without it")
    for name in ("NO_PROXY", "no_proxy"):
        os.environ.pop(name, None)

    with open(args.token_file, encoding="utf-8") as file:
        token = file.read().strip()
    credential = ClientAssertionCredential(
        tenant_id=args.tenant_id, client_id=args.client_id, func=lambda: token
    )
    secrets = SecretClient(vault_url=args.vault_url, credential=credential)
    keys = KeyClient(vault_url=args.vault_url, credential=credential)
    certificates = CertificateClient(vault_url=args.vault_url, credential=credential)

    versions = [
        {"version": item.version, "created": int(item.created_on.timestamp())}
        for item in secrets.list_properties_of_secret_versions(args.secret_name)
    ]
    certificate = certificates.get_certificate(args.certificate_name)
    key = keys.get_key(args.certificate_name)
    backing = secrets.get_secret(args.certificate_name)

    json.dump(
        {
            "versions": versions,
            "certificate": {
                "version": certificate.properties.version,
                "x5t": base64.urlsafe_b64encode(certificate.properties.x509_thumbprint)
                .decode()
                .rstrip("="),
                "cer": base64.b64encode(certificate.cer).decode(),
                "key_id": certificate.key_id,
                "secret_id": certificate.secret_id,
                "content_type": certificate.policy.content_type,
            },
            "key": {
                "kty": enum_text(key.key_type),
                "crv": enum_text(key.key.crv),
                "managed": key.properties.managed,
            },
            "secret": {
                "value": backing.value,
                "content_type": backing.properties.content_type,
                "managed": backing.properties.managed,
                "key_id": backing.properties.key_id,
            },
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
