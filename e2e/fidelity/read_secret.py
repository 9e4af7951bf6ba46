"""Read one Key Vault secret with Microsoft's official Python SDKs, for the fidelity test.

Exchanges a projected service-account token for an Entra token with azure-identity's
ClientAssertionCredential, reads the secret with azure-keyvault-secrets' SecretClient, and
prints {"value": ..., "version": ...} as JSON on stdout.

It is meant to run only against the test world: it refuses to start unless HTTPS_PROXY is
set, and drops NO_PROXY so that every request goes through that proxy, which reaches nothing
but the world's doubles on loopback. Trust the world's CA with REQUESTS_CA_BUNDLE.
"""

import argparse
import json
import logging
import os
import sys

from azure.identity import ClientAssertionCredential
from azure.keyvault.secrets import SecretClient


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant-id", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--vault-url", required=True)
    parser.add_argument("--secret-name", required=True)
    parser.add_argument("--version", default=None, help="read this version, not the latest")
    parser.add_argument(
        "--token-file", required=True, help="file holding the service-account token"
    )
    parser.add_argument("--debug", action="store_true", help="log HTTP traffic to stderr")
    return parser.parse_args()


def main():
    args = parse_args()

    if not (os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")):
        sys.exit("HTTPS_PROXY must name the test world's proxy; refusing to run without it")
    for name in ("NO_PROXY", "no_proxy"):
        os.environ.pop(name, None)

    if args.debug:
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)

    with open(args.token_file, encoding="utf-8") as file:
        token = file.read().strip()

    credential = ClientAssertionCredential(
        tenant_id=args.tenant_id, client_id=args.client_id, func=lambda: token
    )
    client = SecretClient(
        vault_url=args.vault_url, credential=credential, logging_enable=args.debug
    )
    secret = client.get_secret(args.secret_name, version=args.version)
    json.dump({"value": secret.value, "version": secret.properties.version}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
