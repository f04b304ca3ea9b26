"""Every SDK error lands in one taxonomy; errors survive the durable store (pickling)."""

from __future__ import annotations

import pickle

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from interlock.config import AwsSite
from interlock.providers.aws import AwsProvider
from interlock.providers.base import (
    AuthError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    QuotaError,
    TransientError,
)


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "RunInstances",
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("AuthFailure", 401), AuthError),
        (client_error("InsufficientInstanceCapacity", 500), QuotaError),
        (client_error("AddressLimitExceeded"), QuotaError),
        (client_error("InvalidInstanceID.NotFound"), NotFoundError),
        (client_error("RequestLimitExceeded", 503), TransientError),
        (client_error("SomethingOdd", 502), TransientError),
        (client_error("InvalidParameterValue"), InvalidRequestError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), TransientError),
    ],
)
def test_aws_errors_map_into_the_taxonomy(error: Exception, kind: type[ProviderError]) -> None:
    provider = AwsProvider(
        "s", AwsSite(provider="aws", region="us-east-1", endpoint="http://127.0.0.1:9")
    )

    def boom() -> None:
        raise error

    with pytest.raises(kind) as e:
        provider._call(boom)
    assert str(e.value).startswith("s: ")


def test_provider_errors_pickle_as_they_were() -> None:
    err = QuotaError("site-a", "no capacity")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is QuotaError and str(back) == str(err) and back.site == "site-a"
