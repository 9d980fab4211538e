"""Selection: which candidate is the answer. Racing confirmation across methods (issue 26).
Ray-free."""
