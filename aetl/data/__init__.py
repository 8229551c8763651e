"""The images: domains (one module per dataset, domains/), a domain mapped into the pair's
frame (framing.py) by a fit chosen label-free (fit.py), the source/target pair and its
splits (pair.py), where the images live while a run trains (storage.py), and the decoded-
image cache (imagecache.py)."""
