"""The bytes of posted images being decoded count toward admission: past `MAX_DECODING_BYTES` a request is
refused before its decode (which takes a few times the image's size), unless it is the only one."""

import pytest

from service.core.errors import ServiceUnavailable
from service.core.prometheus import Metrics
from service.core.settings import Settings
from service.http.runtime import ServiceRuntime


def test_images_being_decoded_are_bounded_in_bytes_and_the_first_is_always_let_in():
    runtime = ServiceRuntime(Settings(max_decoding_bytes=4096), {}, Metrics())
    try:
        with runtime.decoding(10_000):  # alone: larger than the bound, admitted all the same
            with pytest.raises(ServiceUnavailable) as refused:
                with runtime.decoding(10):
                    pass
            assert refused.value.code == "queue_full" and refused.value.headers["Retry-After"] == "1"
        with runtime.decoding(3000):
            with runtime.decoding(1000):  # 4000 of 4096
                with pytest.raises(ServiceUnavailable):
                    with runtime.decoding(100):
                        pass
        with runtime.decoding(4096):  # everything was given back
            pass
    finally:
        runtime.stop()
