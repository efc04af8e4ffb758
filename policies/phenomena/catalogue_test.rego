# Tests of the phenomenon table catalogue (data.catalogue in data.json): the
# only tables that cross to the RIEC. They guard data.json against a change
# that would widen the boundary: a dimension outside the fixed list, a
# municipality crossed with anything, a period finer than a quarter, a table
# with a filter or free text. ketenpoort checks the same when it builds a
# release, and refuses the catalogue otherwise.
package ketenpoort.catalogue_test

allowed_dimensions := {"form", "sector", "locationType", "municipality", "victimGroup"}

tables := data.catalogue.tables

trends := data.catalogue.trends

table_ids := {t.id | some t in tables}

crosses_municipality(t) if {
	"municipality" in t.dimensions
	count(t.dimensions) > 1
}

is_code(c) if {
	is_string(c)
	count(c) >= 2
	lower(c) == c
	not contains(c, " ")
}

test_dimensions_are_exactly_the_allowed_ones if {
	{d | some d, _ in data.catalogue.dimensions} == allowed_dimensions
}

test_every_dimension_has_unique_codes_and_no_total if {
	every _, spec in data.catalogue.dimensions {
		count(spec.codes) > 0
		count({c | some c in spec.codes}) == count(spec.codes)
		every c in spec.codes {
			is_code(c)
			c != data.catalogue.total
		}
	}
}

test_forms_are_the_covenant_forms if {
	data.catalogue.dimensions.form.codes == data.covenant.forms
}

test_tables_use_only_allowed_dimensions_once if {
	count(tables) > 0
	every t in tables {
		count(t.dimensions) > 0
		count({d | some d in t.dimensions}) == count(t.dimensions)
		every d in t.dimensions {
			d in allowed_dimensions
		}
	}
}

test_municipality_is_never_crossed if {
	every t in tables {
		not crosses_municipality(t)
	}
}

test_periods_are_year_or_quarter if {
	every t in tables {
		t.period in {"year", "quarter"}
	}
}

test_tables_have_no_other_keys if {
	every t in tables {
		{k | some k, _ in t} == {"id", "title", "dimensions", "period"}
	}
	every tr in trends {
		{k | some k, _ in tr} == {"id", "title", "table", "compare"}
	}
}

test_ids_are_unique_codes if {
	count(table_ids) == count(tables)
	trend_ids := {tr.id | some tr in trends}
	count(trend_ids) == count(trends)
	count(trend_ids & table_ids) == 0
	every id in table_ids | trend_ids {
		is_code(id)
	}
}

test_trends_compare_quarters_of_a_catalogue_table if {
	every tr in trends {
		tr.compare in {"previous-quarter", "same-quarter-previous-year"}
		some t in tables
		t.id == tr.table
		t.period == "quarter"
	}
}

test_the_required_tables_are_there if {
	required := {
		"vorm-jaar", "vorm-kwartaal", "vorm-sector-jaar", "vorm-locatie-jaar",
		"slachtoffergroep-vorm-jaar", "gemeente-jaar",
	}
	count(required - table_ids) == 0
}

test_a_crossed_municipality_would_be_caught if {
	crosses_municipality({"dimensions": ["municipality", "form"]})
	not crosses_municipality({"dimensions": ["municipality"]})
	not is_code("Vrije Tekst")
}
