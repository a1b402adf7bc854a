"""Why a case was returned, and what its report could say.

- ``maps``: similarity maps of a query/hit pair (Grad-CAM of the embedding dot product on the last
  convolutional stage; occlusion sensitivity), in ROI space and resampled into each volume's own space;
- ``sanity``: the model- and data-randomisation checks of those maps (Adebayo et al. 2018);
- ``words``: which words of the query notes and of a hit's report matched (lexical overlap with a BM25-style
  tokenizer, and a leave-one-word-out change of the text embedding score);
- ``orads``: the O-RADS MRI score from lexicon findings (published decision rules, as a rule table);
- ``pair`` / ``volume``: both maps of a query and an archived hit in each study's own voxel space;
  ``slicer_maps``: those maps as MRML overlay nodes (for the module; no Qt);
- ``draft``: a drafted structured report for a query from its predicted terms and its nearest cases;
- ``lidc_terms`` / ``draft_eval``: the evaluations (term heads on LIDC-IDRI ratings; drafts on the
  synthetic archive).

Heavy imports (torch, SimpleITK) happen inside the functions that need them.
"""
