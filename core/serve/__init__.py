"""The live page (``python main.py serve``): draw a digit, watch every layer respond.

``pictures`` turns arrays into small PNGs and back, ``live`` (LivePage) runs the model
on one picture, ``figures`` finds the model's training figures, ``server`` answers the
browser; ``static/`` holds the page itself (plain HTML, CSS and JavaScript: no build step,
nothing fetched from the internet).
"""
