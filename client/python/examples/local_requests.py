"""A local stand-in for the network in the seed 002 examples (``requests.get(url).text``).

The n-th ``get()`` in a process answers a page with n images, written the
way the seed's regex ``src=//(.*?) width`` looks for them, so the consumer's
printed image counts tell which page it received.
"""

import itertools

_calls = itertools.count(1)


class Response:
    def __init__(self, url: str, text: str) -> None:
        self.url = url
        self.status_code = 200
        self.text = text


def get(url: str, **kwargs: object) -> Response:
    n = next(_calls)
    host = url.split("//", 1)[-1]
    images = "".join("<img src=//%s/img/%d.png width=270 height=129>" % (host, k)
                     for k in range(n))
    return Response(url, "<html><body>%s</body></html>" % images)
