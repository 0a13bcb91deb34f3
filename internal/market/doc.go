// Package market owns the economics of compute: resources and all-or-nothing
// bundles, reserve prices at posted prices, clearing (who wins a cycle and what
// each winner pays) and the dynamics of posted prices.
//
// Everything here is pure logic. The package never touches the database, the
// filesystem, the network or the clock: callers pass in pending bids, free
// capacity and prices, and get back a ClearingPlan that a separate step applies
// in one transaction. Money is always an exact money.Micro; floats appear only
// for utilization and ranking keys, never for an amount that is paid.
package market
