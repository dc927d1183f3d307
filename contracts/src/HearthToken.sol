// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title HearthToken
/// @notice The payment token of the Hearth inference market: a plain ERC-20 with EIP-2612
///         permit and a fixed supply minted once, at deploy, to `holder`.
contract HearthToken is ERC20, ERC20Permit {
    /// @param holder receives the whole supply
    /// @param supply the fixed supply, in the token's smallest unit (18 decimals)
    constructor(address holder, uint256 supply) ERC20("Hearth", "HRT") ERC20Permit("Hearth") {
        _mint(holder, supply);
    }
}
