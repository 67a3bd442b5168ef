"""Fetching dataset files into the cache with pooch: mirrors, MD5 checks, a progress bar.

pooch verifies the MD5 of a file already in the cache on every call and downloads
it again when it does not match. Every failure (offline, server error, checksum
mismatch on every mirror) becomes one UserError that says what to download and
where to put it.
"""

import os
import re
from pathlib import Path

import pooch
import requests

from data.errors import UserError

CACHE_ENV = "NUMPY_CNN_CACHE"


def default_cache_dir():
    """The download cache: ``$NUMPY_CNN_CACHE`` if set, else the OS cache (~/.cache/numpy-cnn).

    Returns a Path (not created here; pooch creates it on the first download).
    """
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("numpy-cnn"))


def make_downloader():
    """The pooch downloader used for every fetch: HTTP(S) with a tqdm progress bar.

    Tests replace this function to fetch without the network.
    """
    return pooch.HTTPDownloader(progressbar=True)


def reason(error):
    """What went wrong in a download ``error``, short: the innermost cause, without reprs.

    A requests ConnectionError wraps urllib3's MaxRetryError, whose ``reason`` is the cause
    ("Failed to resolve 'host' ([Errno -3] Temporary failure in name resolution)").
    """
    inner = error.args[0] if error.args else error
    inner = getattr(inner, "reason", inner)
    text = str(inner) if isinstance(inner, BaseException) else str(error)
    return clip(re.sub(r"<[^<>]*>: ", "", text))


def clip(text, limit=240):
    """``text`` on one line, cut at a word boundary to about ``limit`` characters, "..." marking a cut.

    A requests error repeats the URL and nests its causes; the start says what happened.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(" ,;:(") + " ..."


def fetch(fname, urls, md5, folder, alternative):
    """Path of ``folder/fname``, downloaded from the first working mirror if needed.

    fname:       str, the file's name in the cache.
    urls:        sequence of str, the file's URLs, official address first.
    md5:         str, the file's known MD5 (hex).
    folder:      str or Path of the cache folder for this dataset.
    alternative: str, how else to provide the data (ends the error message).
    Returns a Path whose MD5 matches ``md5``.
    """
    folder = Path(folder)
    reasons = []
    for url in urls:
        try:
            path = pooch.retrieve(
                url,
                known_hash=f"md5:{md5}",
                fname=fname,
                path=folder,
                downloader=make_downloader(),
            )
            return Path(path)
        except ValueError as e:  # pooch's hash mismatch; it deletes the bad download
            got = re.search(r"but got (\w+)", str(e))
            reasons.append(f"{url} served a file of MD5 {got[1] if got else '(unknown)'}")
        except (requests.RequestException, OSError) as e:
            reasons.append(f"{url}: {type(e).__name__}: {reason(e)}")
    target = folder / fname
    stale = " (the copy there has the wrong MD5)" if target.exists() else ""
    raise UserError(
        f"{target}: download failed ({'; '.join(reasons)}). "
        f"Download {urls[0]} yourself (MD5 {md5}) and put it at {target}{stale}, "
        f"or {alternative}"
    )
