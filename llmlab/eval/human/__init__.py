"""Human A/B evaluation (`llmlab eval human`): a SQLite study (`store`), the rating web app (`app` +
`static/index.html`), Bradley-Terry ranking and rater agreement (`ranking`), and the report (`report`)."""
