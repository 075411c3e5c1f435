// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// Minimal ERC-20 surface the distributor needs.
interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
}

/// @title Cumulative Merkle distributor of grass points
/// @notice Each epoch the owner posts the Merkle root of every account's *cumulative* earnings.
/// Anyone may submit a claim for an account; the contract records the cumulative amount and
/// pays only the difference with what that account already claimed, so missing an epoch never
/// loses anything and claiming twice pays nothing.
///
/// "Pays" means: the claimed amount is always recorded on chain (`claimed`, `totalClaimed`, the
/// Claimed event) - that is the ledger of points. If a token was given at deployment, the same
/// amount of it is also transferred to the account; with token == address(0) the contract only
/// tracks points.
///
/// Hashing must match grass/ledger/merkle.py exactly:
///   leaf = keccak256(0x00 ‖ account (20 bytes) ‖ cumulativeAmount (32 bytes big-endian))
///   node = keccak256(0x01 ‖ min(a, b) ‖ max(a, b))
contract CumulativeMerkleDistributor {
    address public owner;
    /// Token paid on claims; address(0) means points are only recorded.
    IERC20 public immutable token;

    /// Root posted for an epoch; zero for an epoch that was never posted.
    mapping(uint256 => bytes32) public roots;
    /// Claims are checked against the root of the latest posted epoch.
    uint256 public latestEpoch;
    bytes32 public latestRoot;
    /// Lowest epoch number the next setRoot accepts (latestEpoch + 1 once a root exists).
    uint256 public nextEpoch;

    mapping(address => uint256) public claimed;
    uint256 public totalClaimed;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event RootPosted(uint256 indexed epoch, bytes32 root);
    event Claimed(
        address indexed account, uint256 indexed epoch, uint256 amount, uint256 cumulativeAmount
    );

    error NotOwner(address caller);
    error ZeroAddress();
    error NotAContract(address token);
    error ZeroRoot();
    error EpochNotIncreasing(uint256 epoch, uint256 nextEpoch);
    error NoRoot();
    error InvalidProof();
    error NothingToClaim(uint256 cumulativeAmount, uint256 alreadyClaimed);
    error TransferFailed();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(address initialOwner, IERC20 token_) {
        if (initialOwner == address(0)) revert ZeroAddress();
        if (address(token_) != address(0) && address(token_).code.length == 0) {
            revert NotAContract(address(token_));
        }
        token = token_;
        owner = initialOwner;
        emit OwnershipTransferred(address(0), initialOwner);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// Post the root of `epoch`. Epochs strictly increase but may skip numbers (an epoch with
    /// nothing to settle need not be posted). A zero root is refused so that `roots(epoch) != 0`
    /// always means "posted" - the writer relies on it to make a retried post idempotent.
    function setRoot(uint256 epoch, bytes32 root) external onlyOwner {
        if (root == bytes32(0)) revert ZeroRoot();
        if (epoch < nextEpoch) revert EpochNotIncreasing(epoch, nextEpoch);
        roots[epoch] = root;
        latestEpoch = epoch;
        latestRoot = root;
        nextEpoch = epoch + 1;
        emit RootPosted(epoch, root);
    }

    function claim(address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
        returns (uint256 amount)
    {
        if (nextEpoch == 0) revert NoRoot();
        if (!verify(latestRoot, account, cumulativeAmount, proof)) revert InvalidProof();
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim(cumulativeAmount, already);
        amount = cumulativeAmount - already;
        claimed[account] = cumulativeAmount;
        totalClaimed += amount;
        emit Claimed(account, latestEpoch, amount, cumulativeAmount);
        if (address(token) != address(0)) _transfer(account, amount);
    }

    function verify(bytes32 root, address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        public
        pure
        returns (bool)
    {
        bytes32 node = keccak256(abi.encodePacked(bytes1(0x00), account, cumulativeAmount));
        for (uint256 i = 0; i < proof.length; ++i) {
            bytes32 sibling = proof[i];
            node = node < sibling
                ? keccak256(abi.encodePacked(bytes1(0x01), node, sibling))
                : keccak256(abi.encodePacked(bytes1(0x01), sibling, node));
        }
        return node == root;
    }

    /// Accepts tokens that return nothing from transfer (USDT-style) as well as those that
    /// return a bool; the claim reverts as a whole if the transfer fails, so nothing is recorded.
    function _transfer(address to, uint256 amount) private {
        (bool ok, bytes memory ret) =
            address(token).call(abi.encodeCall(IERC20.transfer, (to, amount)));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }
}
